//! Kart's public API, black-box, through the gateway: every route's happy
//! path, its validation errors, 401 without a session, 404 for someone
//! else's resource, 403 for a customer on admin routes, and the limits.
//!
//! Each scenario runs twice: on embedded storage (SQLite and the embedded
//! log, as `kart up` runs) and on distributed storage (a PostgreSQL
//! database per service and the test broker).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod catalog;
mod checkout;
mod helpers;
mod live;
mod mail;
mod orders;
mod payment_methods;
mod protections;
mod replay;
mod stock;
mod stripe;

/// Runs `scenario(app)` once per mode, as two tests named after it.
macro_rules! in_both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let app = crate::helpers::TestApp::spawn(crate::helpers::Storage::Embedded).await;
                    crate::scenarios::$scenario(&app).await;
                    app.stop().await;
                }
            )*
        }
        mod distributed {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let app = crate::helpers::TestApp::spawn(crate::helpers::Storage::Distributed).await;
                    crate::scenarios::$scenario(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}

mod scenarios {
    pub use crate::accounts::*;
    pub use crate::catalog::*;
    pub use crate::checkout::*;
    pub use crate::live::*;
    pub use crate::mail::*;
    pub use crate::orders::*;
    pub use crate::payment_methods::*;
    pub use crate::protections::*;
    pub use crate::replay::*;
    pub use crate::stock::*;
}

in_both_modes!(
    accounts_sign_up_sign_in_refresh_and_sign_out,
    account_input_errors_name_the_field,
    sessions_are_checked_on_every_route,
    cards_are_saved_listed_defaulted_and_removed,
    nobody_reaches_another_users_cards,
    a_card_number_or_cvc_reaches_no_table_and_no_log,
    admins_create_update_and_archive_products,
    customers_and_strangers_cannot_edit_the_catalog,
    product_lists_page_and_filter,
    search_tolerates_typos_and_counts_categories,
    catalog_input_errors_name_the_field,
    stock_is_adjusted_with_an_audit_trail,
    stock_errors_and_permissions,
    the_api_documents_itself,
    errors_are_problems_with_request_ids,
    a_service_down_is_a_503_that_reveals_nothing,
    a_saved_card_pays_for_an_order_and_a_cancel_refunds_it,
    a_declined_card_fails_the_order_and_releases_the_stock,
    one_idempotency_key_makes_one_order,
    order_input_errors_name_the_field,
    nobody_reaches_another_users_orders,
    admins_fulfil_and_refund_no_more_than_was_captured,
    replaying_every_event_twice_in_shuffled_order_changes_nothing,
    the_hosted_checkout_takes_the_card_and_the_webhook_settles_it,
    webhooks_are_verified_and_applied_once_in_any_order,
    a_run_of_orders_mails_and_counts_exactly_what_happened,
    the_order_stream_shows_paid_the_moment_it_happens,
);
