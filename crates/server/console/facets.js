// Facet lists with counts from ListSessionAggregations. Clicking a value adds
// `field:"value"` to the query.

import { el, formatCount, keepingFocus, sessionCount } from './format.js';

/** The aggregations return the top 10 of each list; a facet built from two keeps as many. */
const FACET_SIZE = 10;

/** A facet's entries: the value the query matches, the label shown, the count. */
const bucketsOf = (aggregations, list, field, label = (key) => key) =>
  (aggregations[list] || []).map((b) => ({ field, value: b.key, label: label(b.key), count: Number(b.count) || 0 }));

/**
 * The user a connection's user name names, as the table shows it: a human
 * identity's email, a machine identity's name, else the name itself (a
 * native login). The convention is the connector's: `idp:formal:human:<email>`
 * or `idp:formal:machine:<name>`, optionally with `@<role>` (for a human the
 * second `@`, as the email holds one).
 */
export function userOfUsername(username) {
  const identity = /^idp:formal:(human|machine):(.*)$/.exec(username);
  if (!identity) return username;
  const [, type, rest] = identity;
  const ats = [...rest.matchAll(/@/g)].map((m) => m.index);
  const role = ats[type === 'human' ? 1 : 0];
  return role === undefined ? rest : rest.slice(0, role);
}

/**
 * Every user, each under the label the table gives it. Sessions with an
 * email count under it; the emails list leaves out the others (machines,
 * native logins), which count under their user name: it is what their
 * query matches, while their label is the name the table shows.
 */
function usersOf(aggregations) {
  const emails = bucketsOf(aggregations, 'userEmails', 'user.email');
  const counted = new Set(emails.map((b) => b.value.toLowerCase()));
  const others = bucketsOf(aggregations, 'userUsernames', 'user.username', userOfUsername)
    .filter((b) => !counted.has(b.label.toLowerCase()));
  return [...emails, ...others]
    .sort((a, b) => b.count - a.count || a.label.localeCompare(b.label))
    .slice(0, FACET_SIZE);
}

/** Facet title and its entries. */
export const FACETS = [
  ['Users', usersOf],
  ['Resources', (a) => bucketsOf(a, 'resourceNames', 'resource.name')],
  // Both lists count by technology; older control planes filled only the second.
  ['Technologies', (a) => bucketsOf(a, a.resourceTechnologies?.length ? 'resourceTechnologies' : 'sessionTypes', 'technology')],
  ['Connectors', (a) => bucketsOf(a, 'connectorNames', 'connector.name')],
  ['Client IPs', (a) => bucketsOf(a, 'sessionClientIpAddresses', 'client_ip')],
];

/** Rebuilds the lists; a focused value keeps focus (auto-refresh redraws them every few seconds). */
export function renderFacets(root, aggregations, onPick) {
  keepingFocus(root, () => build(root, aggregations, onPick));
}

function build(root, aggregations, onPick) {
  root.replaceChildren();
  for (const [title, entriesOf] of FACETS) {
    const entries = entriesOf(aggregations);
    const id = `facet-${title.toLowerCase().replace(/\W+/g, '-')}`;
    const max = Math.max(1, ...entries.map((e) => e.count));
    const list = el('ul', { 'aria-labelledby': id });
    for (const { field, value, label, count } of entries) {
      const meter = el('span', { class: 'meter', 'aria-hidden': 'true' });
      meter.style.width = `${(count / max) * 100}%`;
      list.append(el('li', {}, el('button', {
        type: 'button', class: 'facet', 'data-field': field, 'data-value': value, 'data-key': `${field}:${value}`,
        // Its shown text first, the label then the count (WCAG 2.5.3, label in name).
        'aria-label': `${label} ${sessionCount(count)}. Add ${field}:"${value}" to the query`,
        onclick: () => onPick(field, value),
      }, meter, el('span', { class: 'facet-key', title: label === value ? label : `${label} (${value})`, text: label }),
      el('span', { class: 'facet-count', text: formatCount(count) }))));
    }
    if (!entries.length) list.append(el('li', { class: 'muted', text: 'none' }));
    root.append(el('section', { class: 'facet-group' }, el('h3', { id, text: title }), list));
  }
}
