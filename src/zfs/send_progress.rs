//! `zfs send -P -v` reports on stderr: estimates first (`full\tSNAP\tBYTES`,
//! `incremental\tFROM\tTO\tBYTES`, `size\tTOTAL`), then once a second while
//! sending, `HH:MM:SS\tBYTES\tSNAPSHOT`, where BYTES counts from the start of
//! the current snapshot's stream (an `-I` stream restarts it per snapshot).

/// Folds progress lines into a running total.
#[derive(Debug, Default, Clone)]
pub struct SendProgress {
    pub estimate: Option<u64>,
    finished: u64,
    current: Option<(String, u64)>,
}

impl SendProgress {
    pub fn bytes(&self) -> u64 {
        self.finished + self.current.as_ref().map_or(0, |c| c.1)
    }

    /// Feed one stderr line; true if the byte count went up.
    pub fn feed(&mut self, line: &str) -> bool {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() == 2 && f[0] == "size" {
            if let Ok(n) = f[1].trim().parse() {
                self.estimate = Some(n);
            }
            return false;
        }
        if f.len() != 3 || !is_clock(f[0]) {
            return false;
        }
        let Ok(n) = f[1].trim().parse::<u64>() else {
            return false;
        };
        let before = self.bytes();
        match &mut self.current {
            Some((snap, b)) if snap == f[2] => *b = (*b).max(n),
            _ => {
                self.finished += self.current.take().map_or(0, |c| c.1);
                self.current = Some((f[2].to_string(), n));
            }
        }
        self.bytes() > before
    }
}

fn is_clock(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_estimate_and_per_snapshot_progress() {
        let mut p = SendProgress::default();
        assert!(!p.feed("incremental\tzpool1/a@s1\tzpool1/a@s2\t1000"));
        assert!(!p.feed("incremental\tzpool1/a@s2\tzpool1/a@s3\t2000"));
        assert!(!p.feed("size\t3000"));
        assert_eq!(p.estimate, Some(3000));
        assert!(p.feed("10:00:01\t500\tzpool1/a@s2"));
        assert!(
            !p.feed("10:00:02\t500\tzpool1/a@s2"),
            "same count is no progress"
        );
        assert!(p.feed("10:00:03\t900\tzpool1/a@s2"));
        assert!(p.feed("10:00:04\t100\tzpool1/a@s3"));
        assert_eq!(p.bytes(), 1000);
        assert!(!p.feed("garbage"));
        assert!(!p.feed("10:0x:04\t100\tzpool1/a@s3"));
        assert_eq!(p.bytes(), 1000);
    }
}
