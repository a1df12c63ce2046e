//! The store conformance suite: what every [`Store`] implementation must do,
//! written once against `&dyn Store`.
//!
//! Each test is a plain `pub async fn name(store: &dyn Store)` in one of the
//! modules below. A test binary per backend (`tests/sqlite.rs`,
//! `tests/postgres.rs`) supplies a constructor for a fresh, empty store and
//! invokes [`conformance_suite!`], which generates one `#[tokio::test]` per
//! shared function, grouped in modules named like the ones here:
//!
//! ```ignore
//! mod conformance;
//! async fn open_postgres() -> conformance::StoreUnderTest { /* fresh database */ }
//! conformance::conformance_suite!(open_postgres);
//! ```
//!
//! Adding a test means writing the function and adding its name to the list
//! in [`conformance_suite!`]; every backend then runs it.

pub mod aggregates;
pub mod fixture;
pub mod identity;
pub mod isolation;
pub mod keys;
pub mod migrations;
pub mod ordering;
pub mod queries;
pub mod registry;
pub mod retention;
pub mod rollup;
pub mod sessions;
pub mod windows;

use gatehouse_store::Store;

/// A fresh, empty store plus whatever must outlive it (a temporary
/// directory, a throwaway database) until the test ends.
pub struct StoreUnderTest {
    store: Box<dyn Store>,
    _keep_alive: Box<dyn std::any::Any + Send>,
}

impl StoreUnderTest {
    pub fn new(store: impl Store, keep_alive: impl std::any::Any + Send) -> Self {
        Self { store: Box::new(store), _keep_alive: Box::new(keep_alive) }
    }

    pub fn store(&self) -> &dyn Store {
        &*self.store
    }
}

/// Generates the whole suite for one backend. `$open` names an
/// `async fn() -> StoreUnderTest` that returns a fresh, empty store; it is
/// called once per test, so tests never see each other's data.
macro_rules! conformance_suite {
    ($open:path) => {
        $crate::conformance::conformance_suite! { @emit $open;
            keys {
                ensure_org_is_idempotent_and_find_org_and_get_org_find_it,
                of_racing_calls_creating_an_org_exactly_one_says_it_created_it,
                api_keys_are_found_by_prefix_whatever_their_org,
                api_key_prefixes_are_unique,
                listing_api_keys_is_per_org_in_creation_order_without_secrets,
                revoking_a_key_works_only_within_its_org_and_only_once,
                touching_a_key_records_its_last_use,
                secret_or_init_keeps_the_first_value,
            }
            sessions {
                inserting_an_existing_id_counts_zero_and_leaves_the_row_unchanged,
                a_batch_repeating_an_id_stores_the_first_and_indexes_only_it,
                empty_and_large_batches_are_inserted_whole,
                the_same_id_may_exist_in_two_orgs,
                get_session_is_scoped_to_its_org,
                get_session_returns_every_field_as_inserted,
                end_user_external_ids_survive_a_round_trip,
            }
            queries {
                empty_query_matches_every_session_of_the_org,
                status_end_and_duration_filters_select_alike_under_every_sort,
                keyword_terms_match_whole_values_in_case_unless_a_fixed_vocabulary,
                text_terms_match_whole_values_case_insensitively,
                text_terms_fold_non_ascii_case,
                phrases_match_whole_values_with_spaces,
                bare_terms_search_every_bare_term_field_as_substrings,
                prefixes_fold_case_on_text_and_fixed_vocabularies,
                boolean_operators_and_precedence,
                time_ranges_with_inclusive_exclusive_and_open_bounds,
                duration_and_string_ranges,
                comparisons,
                bounds_finer_than_a_microsecond_compare_exactly,
                relative_times_resolve_against_the_given_now,
                sets_match_any_element,
                exists_matches_present_values_only,
                negation_includes_sessions_missing_the_field,
                cidr_and_address_matches_over_ipv4_and_ipv6,
                many_valued_fields_match_when_any_value_matches,
                end_user_fields_are_separate_from_the_user,
                status_is_derived_from_the_end_time,
                hostile_values_match_literally_and_nothing_else,
                active_durations_are_measured_to_the_listing_now,
                uuid_ids_match_in_any_case,
            }
            windows {
                window_returns_sessions_overlapping_it,
                window_bounds_are_optional,
                window_keeps_active_sessions_that_started_long_before,
                window_combines_with_the_filter,
                window_sees_the_longest_session_of_its_own_org,
            }
            ordering {
                default_listing_is_newest_first_with_ties_on_id,
                end_time_sort_puts_active_sessions_after_every_end,
                duration_sort_measures_active_sessions_to_now,
                every_sort_is_a_total_order_ties_broken_on_id,
                keyset_paging_walks_every_session_exactly_once,
                reverse_paging_walks_back_in_walking_order,
                paging_respects_filter_and_window,
                paging_is_stable_while_sessions_arrive,
                a_session_ending_mid_walk_keeps_its_place,
                a_session_whose_end_is_recorded_late_keeps_its_place,
                an_end_before_its_start_is_stored_as_its_start,
                a_walk_filters_sessions_as_they_stood_at_its_now,
                limit_caps_every_page,
            }
            isolation {
                no_query_returns_another_orgs_sessions,
                an_org_without_sessions_lists_nothing,
            }
            registry {
                resources_are_unique_per_org_by_name_and_listed_by_name,
                connectors_are_found_by_key_prefix_whatever_their_org,
                ingest_stores_each_event_once,
                statements_replayed_in_any_order_are_stored_once,
                statements_are_listed_in_the_order_they_started,
                a_long_session_is_read_a_page_at_a_time,
                a_running_statement_shows_until_it_completes,
                a_new_run_completes_what_the_runs_it_takes_over_from_left_open,
                a_run_that_says_goodbye_is_over,
                sessions_end_no_earlier_than_their_last_statement,
                a_run_taken_over_ends_no_earlier_than_it_knew_itself_alive,
                expiring_silent_runs_completes_their_open_sessions_once,
                sessions_of_runs_never_heard_have_a_lease,
                a_lapsed_run_heard_again_gets_its_sessions_back,
                a_statement_running_when_its_connector_was_lost_stays_in_the_transcript,
                pending_terminations_are_recent_ones_of_open_sessions,
                a_termination_asked_again_while_pending_is_the_first,
            }
            aggregates {
                aggregate_hits_equal_the_listing_and_buckets_add_up,
                a_costly_filter_counts_the_same_as_a_cheap_one,
                the_session_ids_facet_lists_the_first_ids_once_each,
                every_facet_counts_the_same_alone_as_with_the_others,
                grouping_by_session_id_is_refused,
                aggregate_groups_count_many_valued_fields_per_value,
                aggregate_counts_statements_once_per_session,
                replays_with_new_statements_count_each_statement_once,
                a_statement_running_when_its_session_was_swept_counts_in_its_statements,
            }
            retention {
                retention_deletes_completed_sessions_that_ended_before_the_cutoff,
                retention_never_deletes_active_sessions_and_batch_size_does_not_matter,
            }
            rollup {
                rollup_answers_equal_counting_the_sessions,
                retried_reports_count_each_session_once,
                retention_takes_deleted_sessions_out_of_the_rollup,
            }
            identity {
                identity_users_are_unique_per_org_and_type_whatever_their_case,
                identity_updating_a_user_rewrites_its_fields_within_its_org,
                identity_access_tokens_are_hashes_of_their_users_found_by_prefix,
                identity_default_roles_and_grants_are_per_resource_of_the_org,
            }
        }
    };
    (@emit $open:path; $($module:ident { $($test:ident),* $(,)? })*) => {
        $(
            mod $module {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[tokio::test]
                    async fn $test() {
                        let under_test = $open().await;
                        $crate::conformance::$module::$test(under_test.store()).await;
                    }
                )*
            }
        )*
    };
}
pub(crate) use conformance_suite;
