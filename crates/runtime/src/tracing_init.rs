use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::error::Error;

/// Log output format, for a `--log-format` flag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line, fields flattened, with the current span.
    Json,
}

/// Installs the global tracing subscriber writing to stdout. `filter` uses `RUST_LOG` syntax
/// (e.g. `info,drbridge_hub=debug`); the caller decides whether it comes from a flag or the
/// environment. Fails on a bad filter or if a subscriber is already installed.
pub fn init_tracing(format: LogFormat, filter: &str) -> Result<(), Error> {
    let env_filter = EnvFilter::try_new(filter).map_err(|e| Error::LogFilter {
        filter: filter.to_owned(),
        reason: e.to_string(),
    })?;
    let registry = tracing_subscriber::registry().with(env_filter);
    let result = match format {
        LogFormat::Plain => registry.with(tracing_subscriber::fmt::layer()).try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
    result.map_err(|e| Error::TracingInit(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filter_is_an_error() {
        assert!(matches!(
            init_tracing(LogFormat::Plain, "info,[[["),
            Err(Error::LogFilter { .. })
        ));
    }

    #[test]
    fn log_format_parses_from_the_command_line() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", false).unwrap(), LogFormat::Json);
        assert_eq!(
            LogFormat::from_str("plain", false).unwrap(),
            LogFormat::Plain
        );
        assert!(LogFormat::from_str("xml", false).is_err());
    }
}
