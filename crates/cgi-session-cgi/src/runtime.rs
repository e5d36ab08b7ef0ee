//! The crate's async runtime: one current-thread tokio runtime per process, built on first
//! use, on which every blocking call runs ([`block_on`]).

use std::future::Future;
use std::sync::OnceLock;

use crate::error::CgiError;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> Result<&'static tokio::runtime::Runtime, CgiError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CgiError::Runtime)?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `future` to completion on this crate's runtime (a current-thread tokio runtime, one per
/// process, built on first use). Tasks spawned by earlier calls (such as the memcached
/// client's connections) make progress while it runs.
///
/// ```
/// let n = cgi_session_cgi::block_on(async { 40 + 2 }).unwrap();
/// assert_eq!(n, 42);
/// ```
///
/// # Errors
/// [`CgiError::InsideAsyncRuntime`] when called from async code; [`CgiError::Runtime`] when
/// the runtime cannot start.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, CgiError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(CgiError::InsideAsyncRuntime);
    }
    Ok(runtime()?.block_on(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocking_calls_inside_a_runtime_are_refused() {
        let e = block_on(async {}).unwrap_err();
        assert!(matches!(e, CgiError::InsideAsyncRuntime));
    }
}
