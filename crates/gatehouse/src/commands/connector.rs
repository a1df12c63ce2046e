//! `gatehouse connector`: the PostgreSQL proxy.

use std::process::ExitCode;

use anyhow::Context;
use gatehouse_connector::config::{Config, ConfigError};

use super::{UsageError, shutdown_signal};
use crate::cli::ConnectorArgs;

pub async fn run(args: ConnectorArgs) -> anyhow::Result<ExitCode> {
    let config = match Config::load(args.config.as_deref()) {
        // Nothing given at all: a mistake in how it was called.
        Err(nothing @ ConfigError::Nothing) => return Err(UsageError(nothing.to_string()).into()),
        loaded => loaded.context("cannot load the connector configuration")?,
    };
    gatehouse_connector::runtime::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
