//! Metering: `GET /v1/sprites/{name}/usage?from=&to=` and
//! `GET /v1/usage?from=&to=` (per UTC day). Amounts and their cost at the
//! daemon's rates.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Amounts {
    /// CPU time of the sprite's processes.
    pub cpu_seconds: f64,
    /// Memory held, integrated over time (GB = 10^9 bytes).
    pub ram_gb_seconds: f64,
    /// Allocated bytes of its volume and checkpoints on local disk,
    /// integrated over time.
    pub hot_storage_gb_seconds: f64,
    /// Bytes in object storage, integrated over time.
    pub cold_storage_gb_hours: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Cost {
    pub cpu: f64,
    pub ram: f64,
    pub hot_storage: f64,
    pub cold_storage: f64,
    pub total: f64,
}

/// Prices per unit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Rates {
    pub cpu_per_vcpu_hour: f64,
    pub ram_per_gb_hour: f64,
    pub hot_storage_per_gb_month: f64,
    pub cold_storage_per_gb_month: f64,
}

/// Hours in the month the per-month storage prices are divided by.
pub const HOURS_PER_MONTH: f64 = 730.0;

impl Default for Rates {
    /// The public service's.
    fn default() -> Self {
        Rates {
            cpu_per_vcpu_hour: 0.07,
            ram_per_gb_hour: 0.04375,
            hot_storage_per_gb_month: 0.50,
            cold_storage_per_gb_month: 0.02,
        }
    }
}

impl Rates {
    pub fn cost(&self, a: &Amounts) -> Cost {
        let cpu = a.cpu_seconds / 3600.0 * self.cpu_per_vcpu_hour;
        let ram = a.ram_gb_seconds / 3600.0 * self.ram_per_gb_hour;
        let hot_storage =
            a.hot_storage_gb_seconds / 3600.0 / HOURS_PER_MONTH * self.hot_storage_per_gb_month;
        let cold_storage =
            a.cold_storage_gb_hours / HOURS_PER_MONTH * self.cold_storage_per_gb_month;
        Cost {
            cpu,
            ram,
            hot_storage,
            cold_storage,
            total: cpu + ram + hot_storage + cold_storage,
        }
    }
}

impl std::ops::AddAssign for Amounts {
    fn add_assign(&mut self, o: Amounts) {
        self.cpu_seconds += o.cpu_seconds;
        self.ram_gb_seconds += o.ram_gb_seconds;
        self.hot_storage_gb_seconds += o.hot_storage_gb_seconds;
        self.cold_storage_gb_hours += o.cold_storage_gb_hours;
    }
}

/// One sprite's usage over a range.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpriteUsage {
    pub sprite: String,
    pub usage: Amounts,
    pub cost: Cost,
}

/// `GET /v1/sprites/{name}/usage`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsageReport {
    pub sprite: String,
    /// RFC 3339.
    pub from: String,
    pub to: String,
    pub usage: Amounts,
    pub cost: Cost,
    pub currency: String,
    pub rates: Rates,
}

/// One UTC day of `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DayUsage {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub sprites: Vec<SpriteUsage>,
    pub usage: Amounts,
    pub cost: Cost,
}

/// `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrgUsage {
    pub from: String,
    pub to: String,
    pub days: Vec<DayUsage>,
    pub usage: Amounts,
    pub cost: Cost,
    pub currency: String,
    pub rates: Rates,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_at_the_public_rates() {
        let r = Rates::default();
        let c = r.cost(&Amounts {
            cpu_seconds: 3600.0,
            ram_gb_seconds: 3600.0,
            hot_storage_gb_seconds: 3600.0 * HOURS_PER_MONTH,
            cold_storage_gb_hours: HOURS_PER_MONTH,
        });
        assert!((c.cpu - 0.07).abs() < 1e-12);
        assert!((c.ram - 0.04375).abs() < 1e-12);
        assert!((c.hot_storage - 0.5).abs() < 1e-12);
        assert!((c.cold_storage - 0.02).abs() < 1e-12);
        assert!((c.total - 0.63375).abs() < 1e-12);
    }
}
