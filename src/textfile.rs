//! Reading the broker's own text files (`sol.conf`, the password file, the
//! ACL file) with a size bound, and reporting problems the way their parsers
//! do: a line number (0 for the file as a whole) and a message that names
//! the file.

use std::io::Read;
use std::path::Path;

/// Reads `path` as UTF-8 text of at most `max_size` bytes; `what` names the
/// kind of file in messages ("config file"). An error is a line, 0 when the
/// file could not be read at all, and a message. The size bound is applied
/// while reading, so `-c /dev/zero` fails instead of eating memory.
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
