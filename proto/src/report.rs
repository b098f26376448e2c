//! An error and its causes on one line, each cause once: what both
//! services and herdctl print when they stop on an error. Some libraries
//! (and some of our own errors) write their cause into their message and
//! also return it as `source()`; anyhow's `{:#}` and `{:?}` would then
//! print it twice or three times.

use std::error::Error;

/// `err` and each cause not already said by the text before it, joined with
/// ": ".
pub fn chain(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// How a service's `main` ends: success, or the error with each cause once
/// on stderr (anyhow's own report repeats causes that an error also writes
/// into its message) and exit status 1.
pub fn exit<E>(result: Result<(), E>) -> std::process::ExitCode
where
    E: AsRef<dyn Error + Send + Sync + 'static>,
{
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{msg}")]
    struct E {
        msg: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    fn e(msg: &'static str, source: Option<E>) -> E {
        E {
            msg,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn each_cause_once() {
        let cases = [
            (e("a", None), "a"),
            (
                e("open store", Some(e("disk full", None))),
                "open store: disk full",
            ),
            (
                // The middle one repeats its cause in its message.
                e(
                    "open store",
                    Some(e(
                        "database: unable to open",
                        Some(e("unable to open", None)),
                    )),
                ),
                "open store: database: unable to open",
            ),
            (
                e(
                    "x",
                    Some(e(
                        "error returned: (code: 14) no",
                        Some(e("(code: 14) no", Some(e("errno 2", None)))),
                    )),
                ),
                "x: error returned: (code: 14) no: errno 2",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(chain(&err), want);
        }
    }
}
