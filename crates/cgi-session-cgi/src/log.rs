//! [`StderrLog`]: warnings and errors on standard error, the web server's error log.

use std::fmt;
use std::sync::OnceLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable that sets the level of [`StderrLog::from_env`], or turns it off.
pub const LOG_ENV: &str = "CGI_SESSION_LOG";

/// Whether the process's logging was decided (installed, refused or turned off), and whether
/// ours was installed.
static DECIDED: OnceLock<bool> = OnceLock::new();

/// Logging of warnings and errors to standard error, which the web server puts in its error
/// log.
///
/// cgi-session reports what it does not tell the caller (a stored session that does not
/// decode and is replaced, a lock whose lease ran out...) through [`tracing`], which prints
/// nothing until a program installs a subscriber, and a CGI program rarely does. So the first
/// [`CgiRequest::from_env`](crate::CgiRequest::from_env),
/// [`CgiSession::new`](crate::CgiSession::new) (or `from_store`),
/// `connect_memcached` (feature `memcache`) or
/// [`CgiError::response`](crate::CgiError::response) installs [`StderrLog::from_env`]: warnings
/// and errors, one line each, prefixed with the program's name, as Apache and lighttpd expect:
///
/// ```text
/// [cgi:error] [pid 4242] [client 192.0.2.7:50000] AH01215: greet-cgi: WARN stored session does not decode; issuing a new session and leaving the stored bytes alone session=5ee0c1d2… error=...
/// ```
///
/// Session ids appear shortened (`5ee0c1d2…`), never whole.
///
/// It is not installed when the program has set a global `tracing` subscriber of its own
/// before (that one gets the events), and it is turned off:
///
/// * from the server's configuration: `CGI_SESSION_LOG=off` in the program's environment
///   (Apache: `SetEnv CGI_SESSION_LOG off`; lighttpd: `setenv.add-environment`); the same
///   variable sets the level: `error`, `warn` (the default), `info`, `debug`, `trace`;
/// * from the program: `StderrLog::off().install()` before the first call above.
///
/// ```
/// use cgi_session_cgi::StderrLog;
///
/// // At the top of main, before anything else of this crate: errors only, another name.
/// let installed = StderrLog::from_env()
///     .program("shop")
///     .level(cgi_session_cgi::Level::ERROR)
///     .install();
/// # let _ = installed;
/// // Or no stderr logging at all:
/// // StderrLog::off().install();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "nothing is logged until `install` is called"]
pub struct StderrLog {
    program: String,
    level: Option<Level>,
    unknown_setting: Option<String>,
}

impl StderrLog {
    /// The default: the program's file name (from `argv[0]`) as the prefix, level
    /// [`Level::WARN`], unless [`LOG_ENV`] (`CGI_SESSION_LOG`) says `off` or another level.
    pub fn from_env() -> Self {
        let program = std::env::args_os()
            .next()
            .map(std::path::PathBuf::from)
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "cgi-session".to_owned());
        let mut log = Self {
            program,
            level: Some(Level::WARN),
            unknown_setting: None,
        };
        if let Some(setting) = std::env::var_os(LOG_ENV) {
            let setting = setting.to_string_lossy();
            match parse_level(&setting) {
                Some(level) => log.level = level,
                None => log.unknown_setting = Some(setting.into_owned()),
            }
        }
        log
    }

    /// No logging to standard error: [`StderrLog::install`] then only records that the
    /// program decided so.
    pub fn off() -> Self {
        Self {
            program: String::new(),
            level: None,
            unknown_setting: None,
        }
    }

    /// The prefix of every line (default: the program's file name).
    pub fn program(mut self, name: impl Into<String>) -> Self {
        self.program = name.into();
        self
    }

    /// The least severe level printed (default [`Level::WARN`]: warnings and errors).
    pub fn level(mut self, level: Level) -> Self {
        self.level = Some(level);
        self
    }

    /// Installs this as the process's global `tracing` subscriber. Returns `true` when it was
    /// installed; `false` when it is [`StderrLog::off`], when the program has a global
    /// subscriber already, or when logging was decided before (by an earlier `install`, or
    /// on its own by the first call of this crate that needs it).
    pub fn install(self) -> bool {
        let mut installed = false;
        DECIDED.get_or_init(|| {
            installed = self.try_install();
            installed
        });
        installed
    }

    fn try_install(self) -> bool {
        let Some(level) = self.level else {
            return false;
        };
        if tracing::dispatcher::has_been_set() {
            return false;
        }
        let subscriber = subscriber(self.program.clone(), level, std::io::stderr);
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            return false;
        }
        if let Some(setting) = &self.unknown_setting {
            tracing::warn!("{LOG_ENV}={setting:?} is not one of off, error, warn, info, debug, trace; logging warnings and errors");
        }
        true
    }
}

/// Installs [`StderrLog::from_env`] unless the logging was decided already.
pub(crate) fn ensure_installed() {
    if DECIDED.get().is_none() {
        let _ = StderrLog::from_env().install();
    }
}

fn parse_level(setting: &str) -> Option<Option<Level>> {
    Some(match setting.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "0" => None,
        "error" => Some(Level::ERROR),
        "warn" | "warning" | "" => Some(Level::WARN),
        "info" => Some(Level::INFO),
        "debug" => Some(Level::DEBUG),
        "trace" => Some(Level::TRACE),
        _ => return None,
    })
}

/// The subscriber [`StderrLog`] installs, writing to `writer`.
pub(crate) fn subscriber<W>(program: String, level: Level, writer: W) -> impl Subscriber
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_max_level(level)
        .event_format(Prefixed { program })
        .finish()
}

/// `program: LEVEL message key=value...`, on one line (line breaks inside messages are
/// escaped, so that one event is one line of the server's log).
struct Prefixed {
    program: String,
}

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut fields), event)?;
        let fields = fields.replace('\r', "\\r").replace('\n', "\\n");
        writeln!(
            writer,
            "{}: {} {fields}",
            self.program,
            event.metadata().level()
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log destination for tests.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl Buffer {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn lines_are_prefixed_one_per_event_and_below_the_level_dropped() {
        let buffer = Buffer::default();
        let sub = subscriber("greet-cgi".into(), Level::WARN, buffer.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::info!("not shown");
            tracing::warn!(session = "5ee0c1d2…", "stored session does not decode");
            tracing::error!(error = "line one\nline two", "store failed");
        });
        let out = buffer.text();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(
            lines[0],
            "greet-cgi: WARN stored session does not decode session=\"5ee0c1d2…\""
        );
        assert!(
            lines[1].starts_with("greet-cgi: ERROR store failed"),
            "{out}"
        );
        assert!(lines[1].contains("line one\\nline two"), "{out}");
    }

    #[test]
    fn levels_parse() {
        assert_eq!(parse_level("OFF"), Some(None));
        assert_eq!(parse_level(" error "), Some(Some(Level::ERROR)));
        assert_eq!(parse_level(""), Some(Some(Level::WARN)));
        assert_eq!(parse_level("loud"), None);
        assert_eq!(StderrLog::off().level, None);
    }
}
