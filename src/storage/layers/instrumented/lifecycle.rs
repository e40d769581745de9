//! The lifecycle primitives of an [`Instrumented`] backend: traced, observed and given
//! their errors' context like its [`Backend`] operations.

use super::{Instrumented, Observer};
use crate::error::Result;
use crate::storage::backend::Operation;
use crate::storage::layers::wrap::{Subject, wrap_calls};
use crate::storage::layout::Key;
use crate::storage::lifecycle::LifecycleBackend;

#[deny(clippy::missing_trait_methods)]
impl<B: LifecycleBackend, O: Observer> LifecycleBackend for Instrumented<B, O> {
    wrap_calls! {
        list_dirs, scan, scan_blobs, remove_blobs, expire_upload_storage, tidy
    }

    async fn remove_objects(&self, keys: &[Key]) -> Result<()> {
        let call = self.inner.remove_objects(keys);
        // The key of a failure is the one key when there is one, else the backend's to say.
        let subject = match keys {
            [key] => Subject::Key(key),
            _ => Subject::Class(None),
        };
        self.run(Operation::RemoveObjects, subject, call).await
    }
}
