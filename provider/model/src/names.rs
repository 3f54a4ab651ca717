//! Closed sets of names the documents store as strings.

/// An enum whose variants are stored, parsed and displayed by one name each
/// (`case` is serde's and strum's `rename_all`), with `as_str` and
/// `VARIANTS` (for validators and `--help`). A derive list of its own in
/// every document would drift: serde and strum must agree on each name.
#[macro_export]
macro_rules! names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $case:literal {
            $( $(#[$variant_meta:meta])* $variant:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            ::serde::Serialize, ::serde::Deserialize,
            ::strum::Display, ::strum::EnumString, ::strum::IntoStaticStr, ::strum::VariantNames,
        )]
        #[serde(rename_all = $case)]
        #[strum(serialize_all = $case)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant ),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use strum::VariantNames;

    use crate::policy::PolicyType;
    use crate::region_mapping::Encrypt;
    use crate::repository::{Encryption, StorageClass};
    use crate::session::{BackupKind, SnapshotKind};

    /// serde and strum agree on every name, in both directions.
    fn agree<T>()
    where
        T: VariantNames
            + std::str::FromStr
            + serde::Serialize
            + serde::de::DeserializeOwned
            + PartialEq
            + std::fmt::Debug,
        <T as std::str::FromStr>::Err: std::fmt::Debug,
    {
        for name in T::VARIANTS {
            let parsed: T = name.parse().unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), serde_json::Value::from(*name));
            assert_eq!(serde_json::from_value::<T>(serde_json::Value::from(*name)).unwrap(), parsed);
        }
    }

    #[test]
    fn every_name_is_stored_as_it_is_parsed() {
        agree::<PolicyType>();
        agree::<Encrypt>();
        agree::<Encryption>();
        agree::<StorageClass>();
        agree::<SnapshotKind>();
        agree::<BackupKind>();
        assert_eq!(PolicyType::VARIANTS, ["ec2", "rds"]);
        assert_eq!(Encrypt::VARIANTS, ["all", "encrypted_only"]);
        assert_eq!(StorageClass::VARIANTS, ["STANDARD", "STANDARD_IA", "GLACIER", "DEEP_ARCHIVE"]);
        assert_eq!(StorageClass::ARCHIVE, [StorageClass::Glacier, StorageClass::DeepArchive]);
    }
}
