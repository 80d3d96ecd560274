//! Standard output that never panics. `println!` panics when stdout is a
//! closed pipe (`zfs-nfs-replica status --json | head -1`); these write
//! what they can and stop quietly: the command still ends normally, with
//! its own exit code.

use std::io::Write;

/// Write `text` to stdout; a closed pipe or any other error ends the output
/// silently (there is nobody to tell).
pub fn write(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

/// `println!` that never panics.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::stdout::write(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write(&format!($($arg)*))
    };
}
