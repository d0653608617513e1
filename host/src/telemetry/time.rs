//! Calendar time in UTC without a date-time dependency, for logs and tools.

/// (year, month, day, hour, minute, second) of a Unix time in seconds,
/// in the proleptic Gregorian calendar.
pub fn utc_parts(unix_secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = unix_secs.div_euclid(86_400);
    let rem = unix_secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        assert_eq!(super::utc_parts(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(super::utc_parts(1_700_000_000), (2023, 11, 14, 22, 13, 20));
        assert_eq!(super::utc_parts(951_782_400), (2000, 2, 29, 0, 0, 0));
    }
}
