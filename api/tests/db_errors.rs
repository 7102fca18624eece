//! Postgres errors that mean "not now" are answered 503 (retry), never 500: a terminated
//! backend, as a restart or a failover ends every connection, against a real Postgres.

use sqlx::{Connection, PgConnection};
use tps_api::ApiError;
use tps_api::error::is_transient_sqlstate;

#[test]
fn connection_and_shutdown_sqlstates_are_transient_and_others_not() {
    for code in ["08000", "08006", "08001", "57P01", "57P02", "57P03", "53300"] {
        assert!(is_transient_sqlstate(code), "{code}");
    }
    for code in ["23505", "42P01", "22P02", "40001", "57014", "08P01"] {
        assert!(!is_transient_sqlstate(code), "{code}");
    }
}

#[tokio::test]
async fn a_query_on_a_terminated_backend_is_unavailable_not_internal() {
    let pg = tps_testkit::Postgres::start().await.unwrap();
    let url = pg.create_database().await.unwrap();
    let mut victim = PgConnection::connect(&url).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut victim).await.unwrap();
    let mut admin = PgConnection::connect(&url).await.unwrap();
    let ended: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&mut admin).await.unwrap();
    assert!(ended);
    // Postgres sends FATAL 57P01 ("terminating connection due to administrator command"),
    // then closes: the next query meets one or the other.
    let mut error = None;
    for _ in 0..50 {
        match sqlx::query("SELECT 1").execute(&mut victim).await {
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let error = error.expect("the terminated backend answers no more");
    let shown = error.to_string();
    match ApiError::from(error) {
        ApiError::Unavailable(_) => {}
        other => panic!("{shown} became {other:?}, not 503"),
    }
}
