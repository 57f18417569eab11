//! The tests' PostgreSQL: see [`invite_rotator::testing`].

pub use invite_rotator::testing::database;
