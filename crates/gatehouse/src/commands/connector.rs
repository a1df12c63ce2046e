//! `gatehouse connector`: the PostgreSQL proxy.

use std::process::ExitCode;

use anyhow::Context;
use gatehouse_connector::config::Config;

use super::shutdown_signal;
use crate::cli::ConnectorArgs;

pub async fn run(args: ConnectorArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref()).context("cannot load the connector configuration")?;
    gatehouse_connector::runtime::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
