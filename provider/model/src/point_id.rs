//! The id `coffer points` shows for a restore point and `coffer restore
//! --point` takes: `<policy>/<kind>/<place>/<resource>/<run>`, where the
//! place is the snapshot's region for a snapshot, the region mapping for a
//! replica (the mapping says the region and the account), and the
//! repository for an image-level backup or archive. Every part is a name
//! Coffer validates elsewhere, none holds a `/`, so the id reads back to
//! what the catalog, the tags and the manifests say.

use crate::session::{BackupKind, SnapshotKind};

crate::names! {
    /// What a restore point is: the kinds `coffer points` lists.
    pub enum PointKind as "lowercase" {
        Snapshot,
        Replica,
        Backup,
        Archive,
    }
}

impl From<SnapshotKind> for PointKind {
    fn from(kind: SnapshotKind) -> Self {
        match kind {
            SnapshotKind::Snapshot => PointKind::Snapshot,
            SnapshotKind::Replica => PointKind::Replica,
        }
    }
}

impl From<BackupKind> for PointKind {
    fn from(kind: BackupKind) -> Self {
        match kind {
            BackupKind::Backup => PointKind::Backup,
            BackupKind::Archive => PointKind::Archive,
        }
    }
}

impl PointKind {
    /// Image-level: the point is in a repository, not in EBS or RDS.
    pub fn image_level(self) -> bool {
        matches!(self, PointKind::Backup | PointKind::Archive)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PointId {
    pub policy: String,
    pub kind: PointKind,
    /// Snapshot: its region. Replica: the region mapping that made it.
    /// Backup, archive: the repository's id.
    pub place: String,
    pub resource_id: String,
    pub run_id: String,
}

impl std::fmt::Display for PointId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}/{}", self.policy, self.kind.as_str(), self.place, self.resource_id, self.run_id)
    }
}

impl std::str::FromStr for PointId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let malformed = || {
            format!(
                "{s:?} is not a restore point id; expected <policy>/snapshot/<region>/<resource>/<run>, \
                 <policy>/replica/<region mapping>/<resource>/<run> or <policy>/backup|archive/<repository>/<resource>/<run>, \
                 as `coffer points` shows"
            )
        };
        let parts: Vec<&str> = s.split('/').collect();
        let [policy, kind, place, resource_id, run_id] = parts[..] else { return Err(malformed()) };
        if [policy, kind, place, resource_id, run_id].iter().any(|p| p.is_empty()) {
            return Err(malformed());
        }
        let kind = kind.parse::<PointKind>().map_err(|_| malformed())?;
        Ok(PointId {
            policy: policy.to_string(),
            kind,
            place: place.to_string(),
            resource_id: resource_id.to_string(),
            run_id: run_id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_id_reads_back_to_its_parts_and_refuses_other_shapes() {
        let id = PointId {
            policy: "prod".into(),
            kind: PointKind::Replica,
            place: "dr-west".into(),
            resource_id: "i-0123".into(),
            run_id: "20261130-0300".into(),
        };
        assert_eq!(id.to_string(), "prod/replica/dr-west/i-0123/20261130-0300");
        assert_eq!(id.to_string().parse::<PointId>(), Ok(id));
        let image: PointId = "prod/archive/0a1b2c3d/i-0123/20261130-0300".parse().unwrap();
        assert!(image.kind.image_level() && image.place == "0a1b2c3d");
        for bad in [
            "",
            "prod/snapshot/us-east-1/i-1",
            "prod/image/us-east-1/i-1/r",
            "prod//us-east-1/i-1/r",
            "a/snapshot/b/c/d/e",
        ] {
            let err = bad.parse::<PointId>().unwrap_err();
            assert!(err.contains("coffer points"), "{bad}: {err}");
        }
    }
}
