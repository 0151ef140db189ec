//! The table the bench prints: one row per figure, medians with the 10th-90th percentile spread.

pub fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let idx = ((s.len() - 1) as f64 * p).round() as usize;
    s[idx]
}

pub struct Summary {
    pub median: f64,
}

pub struct Row {
    pub name: String,
    pub unit: String,
    pub median: f64,
    pub spread: String,
    pub n: usize,
    pub target: String,
    pub met: bool,
}

impl Row {
    pub fn new(
        name: &str,
        unit: &str,
        v: Vec<f64>,
        target: &str,
        ok: impl Fn(&Summary) -> bool,
    ) -> Row {
        let m = median(&v);
        Row {
            name: name.into(),
            unit: unit.into(),
            median: m,
            spread: format!("{:.2}-{:.2}", percentile(&v, 0.1), percentile(&v, 0.9)),
            n: v.len(),
            target: target.into(),
            met: ok(&Summary { median: m }),
        }
    }
    pub fn single(name: &str, unit: &str, value: f64, target: &str, met: bool) -> Row {
        Row {
            name: name.into(),
            unit: unit.into(),
            median: value,
            spread: "-".into(),
            n: 1,
            target: target.into(),
            met,
        }
    }
}

pub fn print_table(rows: &[Row]) {
    println!();
    println!("| figure | median | p10-p90 | unit | n | target | met |");
    println!("| --- | ---: | ---: | --- | ---: | --- | --- |");
    for r in rows {
        println!(
            "| {} | {:.2} | {} | {} | {} | {} | {} |",
            r.name,
            r.median,
            r.spread,
            r.unit,
            r.n,
            r.target,
            if r.met { "yes" } else { "NO" }
        );
    }
}
