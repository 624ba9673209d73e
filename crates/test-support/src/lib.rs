//! What the workspace's tests share, and the bench with them: servers a
//! test starts and how to know they are ready (`port`, `ready`), the S3
//! test server (`s3`), a PostgreSQL server (`postgres`), a fake HTTP server on a Unix socket (`unix_http`),
//! facts about processes (`process`), removing a directory that held a
//! storage pool (`pool`), and checking a crash-consistent image (`fsck`). It panics where a test would (a
//! failure here is the test's failure, said in full), except in what the
//! bench calls too (`ready::wait_ready`). See README.md.

pub mod fsck;
pub mod pool;
pub mod port;
pub mod postgres;
pub mod process;
pub mod ready;
pub mod s3;
pub mod unix_http;

pub use port::free_port;
pub use process::rss_kib;
