// Facet lists with counts from ListSessionAggregations. Clicking a value adds
// `field:"value"` to the query.

import { el, formatCount, keepingFocus, sessionCount } from './format.js';

/** Facet title, the aggregation lists that feed it (first non-empty wins), the query field. */
export const FACETS = [
  ['Users', ['userEmails', 'userUsernames'], ['user.email', 'user.username']],
  ['Resources', ['resourceNames'], ['resource.name']],
  ['Technologies', ['resourceTechnologies', 'sessionTypes'], ['technology', 'technology']],
  ['Connectors', ['connectorNames'], ['connector.name']],
  ['Client IPs', ['sessionClientIpAddresses'], ['client_ip']],
];

/** Rebuilds the lists; a focused value keeps focus (auto-refresh redraws them every few seconds). */
export function renderFacets(root, aggregations, onPick) {
  keepingFocus(root, () => build(root, aggregations, onPick));
}

function build(root, aggregations, onPick) {
  root.replaceChildren();
  for (const [title, sources, fields] of FACETS) {
    let index = sources.findIndex((name) => (aggregations[name] || []).length > 0);
    if (index < 0) index = 0;
    const buckets = aggregations[sources[index]] || [];
    const field = fields[index];
    const id = `facet-${title.toLowerCase().replace(/\W+/g, '-')}`;
    const max = Math.max(1, ...buckets.map((b) => Number(b.count) || 0));
    const list = el('ul', { 'aria-labelledby': id });
    for (const bucket of buckets) {
      const count = Number(bucket.count) || 0;
      const meter = el('span', { class: 'meter', 'aria-hidden': 'true' });
      meter.style.width = `${(count / max) * 100}%`;
      list.append(el('li', {}, el('button', {
        type: 'button', class: 'facet', 'data-field': field, 'data-value': bucket.key, 'data-key': `${field}:${bucket.key}`,
        'aria-label': `${bucket.key}: ${sessionCount(count)}. Add ${field}:"${bucket.key}" to the query`,
        onclick: () => onPick(field, bucket.key),
      }, meter, el('span', { class: 'facet-key', title: bucket.key, text: bucket.key }), el('span', { class: 'facet-count', text: formatCount(count) }))));
    }
    if (!buckets.length) list.append(el('li', { class: 'muted', text: 'none' }));
    root.append(el('section', { class: 'facet-group' }, el('h3', { id, text: title }), list));
  }
}
