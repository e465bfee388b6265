#[test]
fn core_scheduling_answers_or_names_what_is_missing() {
    match super::sched_core_cookie(0) {
        // A process nobody gave a cookie has none.
        Ok(cookie) => assert_eq!(cookie, 0),
        Err(e) => assert!(
            e.to_string().contains("CONFIG_SCHED_CORE") || e.to_string().contains("SMT"),
            "{e}"
        ),
    }
}
