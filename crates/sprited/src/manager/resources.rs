//! A sprite's resources policy (`{memory: {limit_mb, autoscale}}`): its RAM
//! limit, kept in the sprite's record and applied to its cgroup when the
//! sandbox starts. A change takes effect at the next start (a restart, or a
//! wake from cold); a running or warm sprite keeps the limit it started with.

use sprites_api::policy::{MemoryPolicy, ResourcesPolicy};

use super::{Manager, RAM_MB};
use crate::db::SpriteRecord;
use crate::error::Error;
use crate::time::now_rfc3339;

impl Manager {
    /// The policy in force: the sprite's RAM limit, never autoscaled.
    pub fn resources_policy(&self, rec: &SpriteRecord) -> ResourcesPolicy {
        ResourcesPolicy {
            memory: Some(MemoryPolicy {
                limit_mb: rec.limits.ram_mb,
                autoscale: false,
            }),
        }
    }

    /// Replace the policy; no `memory` means the daemon's default RAM.
    pub fn set_resources_policy(
        &self,
        rec: &SpriteRecord,
        policy: &ResourcesPolicy,
    ) -> Result<(), Error> {
        let ram_mb = match policy.memory {
            None => self.cfg.default_ram_mb,
            Some(m) => validate_memory(m)?,
        };
        let mut limits = rec.limits.clone();
        limits.ram_mb = ram_mb;
        self.db.set_limits(&rec.id, &limits, &now_rfc3339())?;
        Ok(())
    }
}

fn validate_memory(m: MemoryPolicy) -> Result<u64, Error> {
    if m.autoscale {
        return Err(Error::Invalid(
            "memory.autoscale is not supported by this server: the limit is fixed (send false or leave it out)".into(),
        ));
    }
    if !RAM_MB.contains(&m.limit_mb) {
        return Err(Error::Invalid(format!(
            "memory.limit_mb must be between {} and {}",
            RAM_MB.start(),
            RAM_MB.end()
        )));
    }
    Ok(m.limit_mb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_validated_as_on_create() {
        let m = |limit_mb, autoscale| MemoryPolicy {
            limit_mb,
            autoscale,
        };
        assert_eq!(validate_memory(m(512, false)).expect("512"), 512);
        assert_eq!(validate_memory(m(64, false)).expect("64"), 64);
        assert!(validate_memory(m(63, false)).is_err());
        assert!(validate_memory(m((1 << 20) + 1, false)).is_err());
        assert!(validate_memory(m(512, true)).is_err());
    }
}
