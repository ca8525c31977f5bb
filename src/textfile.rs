//! Reading the broker's own text files (`sol.conf`, the password file, the
//! ACL file) with a size bound, and the one error their parsers report: a
//! line number (0 for the file as a whole) and a message.

use std::fmt;
use std::io::Read;
use std::path::Path;

/// One mistake in a config, password or ACL file. Each reader decides what
/// its messages may quote: the config names the key and quotes the value, a
/// password file never quotes the line (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The 1-based line the mistake is on; 0 when it is about the file as a
    /// whole (it could not be read).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl LineError {
    pub fn new(line: usize, message: impl Into<String>) -> LineError {
        LineError {
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for LineError {
    /// `line N: message`; an error about the whole file (line 0) is just its
    /// message, which names the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for LineError {}

/// Reads `path` as UTF-8 text of at most `max_size` bytes; `what` names the
/// kind of file in messages ("config file"). An error is a line, 0 when the
/// file could not be read at all, and a message: the parts of a
/// [`LineError`]. The size bound is applied while reading, so
/// `-c /dev/zero` fails instead of eating memory.
pub(crate) fn read_text(path: &Path, what: &str, max_size: u64) -> Result<String, (usize, String)> {
    let cannot_read =
        |error: std::io::Error| (0, format!("cannot read {what} {}: {error}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    file.take(max_size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if u64::try_from(bytes.len()).map_or(true, |len| len > max_size) {
        return Err((
            0,
            format!("{what} {} is larger than {max_size} bytes", path.display()),
        ));
    }
    String::from_utf8(bytes).map_err(|error| {
        let bytes = error.as_bytes();
        let valid = bytes
            .get(..error.utf8_error().valid_up_to())
            .unwrap_or(bytes);
        let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
        (line, "not valid UTF-8".to_string())
    })
}
