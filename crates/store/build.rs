//! `sqlx::migrate!` embeds the migration files it finds at compile time and
//! watches those, but not their directories: without this, a new migration
//! file would be missed until something else triggers a rebuild.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
