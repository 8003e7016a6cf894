//! [`Note`]: a short message formatted without allocating, so that a test
//! can describe a failure even while the heap is exhausted.

use core::fmt;

/// Capacity of a [`Note`] in bytes; longer text is cut off. With the
/// length byte the note stays under 128 bytes, small enough to return in a
/// `Result` by value (it cannot be boxed: it must work without a heap).
const CAPACITY: usize = 119;

/// A fixed-capacity line of text (a test's detail or failure reason).
#[derive(Clone, Copy)]
pub struct Note {
    len: u8,
    bytes: [u8; CAPACITY],
}

impl Note {
    /// Formats `args` into a new note, truncating at [`CAPACITY`] bytes.
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut note = Note {
            len: 0,
            bytes: [0; CAPACITY],
        };
        // Writing to a Note never fails; it truncates instead.
        let _ = fmt::write(&mut note, args);
        note
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.bytes[..usize::from(self.len)]) {
            Ok(text) => text,
            // Truncation cut a multi-byte character: drop its start.
            Err(error) => {
                core::str::from_utf8(&self.bytes[..error.valid_up_to()]).unwrap_or_default()
            }
        }
    }
}

impl fmt::Write for Note {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let len = usize::from(self.len);
        let take = text.len().min(CAPACITY - len);
        self.bytes[len..len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take as u8;
        Ok(())
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// `note!("...", args)`: a [`Note`] from a format string.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::note::Note::new(format_args!($($arg)*))
    };
}

/// `fail!("...", args)`: returns `Err(note!(...))` from the current test.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::note::note!($($arg)*))
    };
}

/// `passed!("...", args)`: `Ok(Outcome::Passed(note!(...)))`.
macro_rules! passed {
    ($($arg:tt)*) => {
        Ok($crate::Outcome::Passed($crate::note::note!($($arg)*)))
    };
}

/// `skipped!("...", args)`: `Ok(Outcome::Skipped(note!(...)))`.
macro_rules! skipped {
    ($($arg:tt)*) => {
        Ok($crate::Outcome::Skipped($crate::note::note!($($arg)*)))
    };
}

pub(crate) use {fail, note, passed, skipped};
