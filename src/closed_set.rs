//! Closed label sets: the one macro that makes an enum of a fixed set of values each written
//! as one string (a metric label, a configuration value, a status shown to people).
//!
//! Used for every `reason` set, the cycle's `phase`, the expiry kinds, the grant kind, the
//! `auth_method` and `metrics.histograms` values and the status page's states, so the sets
//! cannot drift apart in shape and no list of a set's values is kept by hand.

/// Defines a closed set: an enum whose `ALL` lists every variant in declaration order (so
/// `value as usize` indexes an array of counters, and a new variant is counted without further
/// change), with `as_str()` for the value as written and `Display` writing the same.
///
/// Attributes before the name (doc comments, further derives) go to the enum, those before a
/// variant to the variant (`#[default]` with `#[derive(Default)]`).
macro_rules! closed_set {
    (
        $(#[$meta:meta])*
        $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident => $label:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order: the order the metrics expose them and
            /// messages list them in; `value as usize` indexes it. (Not every set is iterated
            /// outside tests: the back-off's are written one value at a time.)
            #[allow(dead_code)]
            pub const ALL: [$name; [$($label),*].len()] = [$($name::$variant,)*];

            /// The value as written (the label value, the configuration's spelling).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

pub(crate) use closed_set;
