//! End-to-end test harness (filled below).
