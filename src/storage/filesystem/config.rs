//! The filesystem driver's configuration (`[filesystem]` in the configuration file,
//! `STORAGE_ROOT_DIRECTORY`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Filesystem driver parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Directory holding all data (created if missing). Default `./data`.
    pub root_directory: PathBuf,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        Self {
            root_directory: PathBuf::from("./data"),
        }
    }
}

impl FilesystemConfig {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.root_directory.as_os_str().is_empty() {
            return Err(Error::Config {
                field: "filesystem.root_directory",
                message: "must not be empty".into(),
            });
        }
        Ok(())
    }

    /// Reads `STORAGE_ROOT_DIRECTORY` over `self` when it is set.
    pub fn apply_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(root) = var("STORAGE_ROOT_DIRECTORY") {
            self.root_directory = root.into();
        }
        self
    }
}
