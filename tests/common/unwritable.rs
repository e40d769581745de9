//! A directory made unwritable, even for root, and writable again.

use std::path::Path;

/// Makes `dir` and everything under it unwritable, even for root (`chattr +i`, which root
/// needs `CAP_LINUX_IMMUTABLE` for), or writable again.
pub fn set_writable(dir: &Path, writable: bool) {
    let run = |program: &str, arg: &str| {
        let status = std::process::Command::new(program)
            .args(["-R", arg])
            .arg(dir)
            .status()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(status.success(), "{program} -R {arg} failed");
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if writable {
        if root {
            run("chattr", "-i");
        }
        run("chmod", "u+w");
    } else {
        run("chmod", "a-w");
        if root {
            run("chattr", "+i");
        }
    }
}

/// Makes a directory unwritable ([`set_writable`]) until dropped, also when the test fails.
pub struct Unwritable<'a>(&'a Path);

impl<'a> Unwritable<'a> {
    /// Makes `dir` and everything under it unwritable.
    pub fn new(dir: &'a Path) -> Self {
        set_writable(dir, false);
        Self(dir)
    }
}

impl Drop for Unwritable<'_> {
    fn drop(&mut self) {
        set_writable(self.0, true);
    }
}
