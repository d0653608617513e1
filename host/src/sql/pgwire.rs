//! The PostgreSQL wire protocol listener (`--sql.listen-address`).
