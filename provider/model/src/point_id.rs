//! The id `coffer points` shows for a cloud-native restore point and
//! `coffer restore --point` takes: `<policy>/<kind>/<place>/<resource>/<run>`,
//! where the place is the snapshot's region for a snapshot and the region
//! mapping for a replica (the mapping says the region and the account).
//! Every part is a name Coffer validates elsewhere, none holds a `/`, so
//! the id reads back to what the catalog and the tags say.

use crate::session::SnapshotKind;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PointId {
    pub policy: String,
    pub kind: SnapshotKind,
    /// Snapshot: its region. Replica: the region mapping that made it.
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
                "{s:?} is not a restore point id; expected <policy>/snapshot/<region>/<resource>/<run> or \
                 <policy>/replica/<region mapping>/<resource>/<run>, as `coffer points` shows"
            )
        };
        let parts: Vec<&str> = s.split('/').collect();
        let [policy, kind, place, resource_id, run_id] = parts[..] else { return Err(malformed()) };
        if [policy, kind, place, resource_id, run_id].iter().any(|p| p.is_empty()) {
            return Err(malformed());
        }
        let kind = kind.parse::<SnapshotKind>().map_err(|_| malformed())?;
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
            kind: SnapshotKind::Replica,
            place: "dr-west".into(),
            resource_id: "i-0123".into(),
            run_id: "20261130-0300".into(),
        };
        assert_eq!(id.to_string(), "prod/replica/dr-west/i-0123/20261130-0300");
        assert_eq!(id.to_string().parse::<PointId>(), Ok(id));
        for bad in [
            "",
            "prod/snapshot/us-east-1/i-1",
            "prod/backup/us-east-1/i-1/r",
            "prod//us-east-1/i-1/r",
            "a/snapshot/b/c/d/e",
        ] {
            let err = bad.parse::<PointId>().unwrap_err();
            assert!(err.contains("coffer points"), "{bad}: {err}");
        }
    }
}
