//! The behaviour suite every driver must pass. SKELETON: being written.
