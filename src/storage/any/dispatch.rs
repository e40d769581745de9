//! The machinery behind `drivers!` (below): from one list of drivers, the enums of
//! [`AnyDriver`](super::AnyDriver) and of its associated types, and the dispatch of every
//! operation to the chosen variant's own future.
//!
//! Each operation returns the chosen driver's own future inside a small enum, `Dispatched`,
//! not an `async` wrapper around it: a wrapper holds the call's arguments a second time, and
//! every move of the future (into a task, into `block_on`) copies it. `Dispatched` has one
//! type parameter per driver, the type of that driver's future (unnameable: it is the
//! driver's `impl Future`), inferred from the `match` arm that builds it. Its output is turned
//! into `AnyDriver`'s ([`IntoAny`]): the identity, or the driver's blob stream or upload
//! wrapped in its variant of the enum, told apart by a marker type per driver (two drivers
//! may share an associated type, e.g. an upload state `()`).
//!
//! A driver behind a cargo feature (`#[cfg(feature = "s3")]` in the list) keeps its type
//! parameter when the feature is off (a `cfg` cannot remove a type *argument*), fixed to
//! [`Absent`], an uninhabited type, by a statement that only exists then; so the list is all
//! there is to write, with or without the feature.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// An uninhabited type: the future slot of a driver compiled out of this build.
#[derive(Debug)]
pub(crate) enum Absent {}

/// A driver's result turned into `AnyDriver`'s: the identity, or wrapping a driver's blob
/// stream or upload in its variant (`V` is the driver's marker type).
pub(crate) trait IntoAny<T, V> {
    fn into_any(self) -> T;
}

impl<T, V> IntoAny<T, V> for T {
    #[inline]
    fn into_any(self) -> T {
        self
    }
}

/// What a driver's slot of `Dispatched` holds: its future, or [`Absent`].
pub(crate) trait Slot<T, V> {
    fn poll_slot(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T>;
}

impl<T, V, F: Future<Output: IntoAny<T, V>>> Slot<T, V> for F {
    #[inline]
    fn poll_slot(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.poll(cx).map(IntoAny::into_any)
    }
}

impl<T, V> Slot<T, V> for Absent {
    fn poll_slot(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T> {
        match *self.get_mut() {}
    }
}

/// `inline`: the value itself; `boxed`: pinned on the heap (for a driver whose futures and
/// streams are much larger than the others', which would otherwise grow every variant).
macro_rules! place {
    (inline, $value:expr) => {
        $value
    };
    (boxed, $value:expr) => {
        Box::pin($value)
    };
    (inline type, $ty:ty) => {
        $ty
    };
    (boxed type, $ty:ty) => {
        std::pin::Pin<Box<$ty>>
    };
}

/// Generates `AnyDriver`, `AnyBlobStream`, `AnyUpload`, `Dispatched`, the `dispatch!` and
/// `dispatch_future!` macros and `AnyDriver::open_selected` from the list of drivers, one
/// entry each:
///
/// ```text
/// $                                  (the `$` the generated macros need, passed through)
/// /// docs of the variant
/// #[cfg(feature = "x")]              (optional)
/// Name(DriverType), inline | boxed;
/// ```
///
/// `DriverType` implements [`ConfiguredDriver`](super::ConfiguredDriver).
macro_rules! drivers {
    ($d:tt $(
        $(#[doc = $doc:literal])*
        $(#[cfg($cfg:meta)])?
        $name:ident($driver:ty), $place:ident;
    )+) => {
        /// One of the drivers compiled into this build, chosen at run time from a
        /// [`StorageConfig`](crate::storage::StorageConfig).
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum AnyDriver {
            $( $(#[doc = $doc])* $(#[cfg($cfg)])? $name($driver), )+
        }

        /// The blob stream of an [`AnyDriver`].
        #[pin_project::pin_project(project = AnyBlobStreamProj)]
        #[derive(Debug)]
        pub enum AnyBlobStream {
            $(
                #[doc = concat!("From the `", stringify!($name), "` driver.")]
                $(#[cfg($cfg)])?
                $name(#[pin] place!($place type, <$driver as StorageDriver>::BlobStream)),
            )+
        }

        impl Stream for AnyBlobStream {
            type Item = Result<Bytes>;

            #[inline]
            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                match self.project() {
                    $( $(#[cfg($cfg)])? AnyBlobStreamProj::$name(s) => s.poll_next(cx), )+
                }
            }

            fn size_hint(&self) -> (usize, Option<usize>) {
                match self {
                    $( $(#[cfg($cfg)])? Self::$name(s) => s.size_hint(), )+
                }
            }
        }

        /// The upload handle of an [`AnyDriver`].
        #[derive(Debug)]
        pub enum AnyUpload {
            $(
                #[doc = concat!("From the `", stringify!($name), "` driver.")]
                $(#[cfg($cfg)])?
                $name(<$driver as StorageDriver>::Upload),
            )+
        }

        impl UploadHandle for AnyUpload {
            fn progress(&self) -> UploadProgress {
                match self {
                    $( $(#[cfg($cfg)])? Self::$name(u) => u.progress(), )+
                }
            }
        }

        /// A marker type per driver, telling its conversions apart ([`IntoAny`]).
        #[allow(dead_code)]
        mod variant {
            $( pub(super) struct $name; )+
        }

        $(
            $(#[cfg($cfg)])?
            impl IntoAny<Result<AnyUpload>, variant::$name>
                for Result<<$driver as StorageDriver>::Upload>
            {
                #[inline]
                fn into_any(self) -> Result<AnyUpload> {
                    self.map(AnyUpload::$name)
                }
            }

            $(#[cfg($cfg)])?
            impl IntoAny<Result<BlobRead<AnyBlobStream>>, variant::$name>
                for Result<BlobRead<<$driver as StorageDriver>::BlobStream>>
            {
                #[inline]
                fn into_any(self) -> Result<BlobRead<AnyBlobStream>> {
                    self.map(|b| BlobRead {
                        info: b.info,
                        range: b.range,
                        stream: AnyBlobStream::$name(place!($place, b.stream)),
                    })
                }
            }
        )+

        /// The future of an operation dispatched to one variant: that driver's future
        /// itself (placed as the list says) plus a tag; its output becomes `T` with
        /// [`IntoAny`] when ready.
        #[pin_project::pin_project(project = DispatchedProj)]
        enum Dispatched<T, $($name),+> {
            $(
                // A compiled-out driver's variant exists (for its type parameter), unbuilt.
                $(#[cfg_attr(not($cfg), allow(dead_code))])?
                $name(#[pin] $name),
            )+
            /// Never built: only names `T`.
            #[allow(dead_code)]
            Output(Absent, std::marker::PhantomData<fn() -> T>),
        }

        impl<T, $($name: Slot<T, variant::$name>),+> Future for Dispatched<T, $($name),+> {
            type Output = T;

            #[inline]
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
                match self.project() {
                    $( DispatchedProj::$name(f) => f.poll_slot(cx), )+
                    DispatchedProj::Output(never, _) => match *never {},
                }
            }
        }

        /// Runs `$body` with `$drv` bound to the concrete driver of whichever variant `$self`
        /// is.
        macro_rules! dispatch {
            ($d self_:expr, $d drv:ident => $d body:expr) => {
                match $d self_ {
                    $( $(#[cfg($cfg)])? AnyDriver::$name($d drv) => $d body, )+
                }
            };
        }

        /// Like `dispatch!`, for a future: `$body` is the concrete driver's future, returned
        /// without an `async` wrapper.
        macro_rules! dispatch_future {
            ($d self_:expr, $d drv:ident => $d body:expr) => {{
                let future = match $d self_ {
                    $(
                        $(#[cfg($cfg)])?
                        AnyDriver::$name($d drv) => Dispatched::$name(place!($place, $d body)),
                    )+
                };
                $($(
                    // This driver is compiled out: its slot holds nothing.
                    #[cfg(not($cfg))]
                    let () = if let Dispatched::$name(slot) = &future {
                        let _: &Absent = slot;
                    };
                )?)+
                future
            }};
        }

        impl AnyDriver {
            /// Opens the driver `config` selects, if this build has it.
            async fn open_selected(config: &StorageConfig, options: EngineOptions) -> Result<Self> {
                match config.storage_type {
                    $(
                        $(#[cfg($cfg)])?
                        selected if selected == <$driver as ConfiguredDriver>::STORAGE_TYPE => {
                            Ok(Self::$name(
                                <$driver as ConfiguredDriver>::open(config, options).await?,
                            ))
                        }
                    )+
                    other => Err(other.unavailable()),
                }
            }
        }
    };
}
