//! Five-field cron (`minute hour day-of-month month day-of-week`, evaluated
//! in an IANA time zone) as users write it, checked with croner and
//! translated to EventBridge Scheduler's `cron(min hour dom month dow year)`.
//!
//! EventBridge differs from Unix cron in ways a translation must handle:
//! days of the week count 1-7 from Sunday (Unix: 0-6, 7 = Sunday); exactly
//! one of day-of-month and day-of-week must be `?`, so a rule restricting
//! both (Unix cron ORs them) cannot be expressed and is rejected. Steps
//! (`*/15`) are expanded to lists, which every cron dialect reads alike.

use std::collections::BTreeSet;
use std::str::FromStr;

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Checks a five-field expression; the error says what is wrong and what
/// is allowed.
pub fn check(expression: &str) -> Result<(), String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != 5 || expression.contains('@') {
        return Err(format!(
            "{expression:?} is not a five-field cron expression; expected \"minute hour day-of-month month day-of-week\", e.g. \"0 2 * * *\" (02:00 daily)."
        ));
    }
    croner::Cron::new(expression)
        .parse()
        .map_err(|e| format!("{expression:?} is not a valid cron expression: {e}."))?;
    if restricted(fields[2]) && restricted(fields[4]) {
        return Err(format!(
            "{expression:?} restricts both day-of-month and day-of-week; EventBridge Scheduler can only restrict one of them. Use \"*\" for the other, or two rules."
        ));
    }
    to_eventbridge(expression).map(|_| ())
}

fn restricted(field: &str) -> bool {
    field != "*" && field != "?"
}

/// Checks an IANA time zone name.
pub fn check_timezone(name: &str) -> Result<(), String> {
    chrono_tz::Tz::from_str(name).map(|_| ()).map_err(|_| {
        format!("{name:?} is not an IANA time zone name; expected a name such as \"UTC\", \"Europe/Berlin\" or \"America/New_York\".")
    })
}

/// The EventBridge Scheduler form of a (checked) five-field expression.
pub fn to_eventbridge(expression: &str) -> Result<String, String> {
    let f: Vec<&str> = expression.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = f.as_slice() else {
        return Err(format!("{expression:?} does not have five fields."));
    };
    let minute = expand_steps(minute, 0, 59)?;
    let hour = expand_steps(hour, 0, 23)?;
    let month = expand_steps(month, 1, 12)?;
    let (dom, dow) = if restricted(dow) {
        ("?".to_string(), eventbridge_weekdays(dow)?)
    } else {
        (expand_steps(dom, 1, 31)?, "?".to_string())
    };
    Ok(format!("cron({minute} {hour} {dom} {month} {dow} *)"))
}

/// The five-field form of an EventBridge `cron(...)` expression as Coffer
/// writes them; anything else (rate(), at(), a fixed year) is returned as
/// it is, so a plan shows what the schedule really says.
pub fn from_eventbridge(expression: &str) -> String {
    let inner = expression.strip_prefix("cron(").and_then(|e| e.strip_suffix(')'));
    let Some(fields) = inner.map(|i| i.split_whitespace().collect::<Vec<_>>()) else {
        return expression.to_string();
    };
    let [minute, hour, dom, month, dow, year] = fields.as_slice() else {
        return expression.to_string();
    };
    if *year != "*" {
        return expression.to_string();
    }
    let dom = if *dom == "?" { "*" } else { dom };
    let dow = if *dow == "?" {
        "*".to_string()
    } else {
        match unix_weekdays(dow) {
            Some(dow) => dow,
            None => return expression.to_string(),
        }
    };
    format!("{minute} {hour} {dom} {month} {dow}")
}

/// Expands `a/n`, `*/n` and `a-b/n` items to explicit lists.
fn expand_steps(field: &str, min: u32, max: u32) -> Result<String, String> {
    if !field.contains('/') {
        return Ok(field.to_string());
    }
    let mut values = BTreeSet::new();
    for item in field.split(',') {
        match item.split_once('/') {
            None => {
                values.extend(range(item, min, max)?);
            }
            Some((base, step)) => {
                let step: u32 = step.parse().map_err(|_| format!("{item:?}: the step must be a number"))?;
                if step == 0 {
                    return Err(format!("{item:?}: the step must be at least 1"));
                }
                let (from, to) = match base {
                    "*" => (min, max),
                    b if b.contains('-') => {
                        let r = range(b, min, max)?;
                        (r[0], *r.last().expect("ranges are not empty"))
                    }
                    b => (number(b, min, max)?, max),
                };
                values.extend((from..=to).step_by(step as usize));
            }
        }
    }
    Ok(values.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
}

fn number(s: &str, min: u32, max: u32) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number from {min} to {max}")),
    }
}

fn range(item: &str, min: u32, max: u32) -> Result<Vec<u32>, String> {
    if item == "*" {
        return Ok((min..=max).collect());
    }
    match item.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (number(a, min, max)?, number(b, min, max)?);
            if a > b {
                return Err(format!("{item:?}: a range must go upwards"));
            }
            Ok((a..=b).collect())
        }
        None => Ok(vec![number(item, min, max)?]),
    }
}

/// A Unix weekday (0-7 or a name) as its index from Sunday.
fn weekday(s: &str) -> Result<u32, String> {
    if let Some(i) = DAY_NAMES.iter().position(|d| d.eq_ignore_ascii_case(s)) {
        return Ok(i as u32);
    }
    match s.parse::<u32>() {
        Ok(7) => Ok(0),
        Ok(n) if n <= 6 => Ok(n),
        _ => Err(format!("{s:?} is not a day of the week (0-7 or SUN-SAT)")),
    }
}

/// Unix day-of-week field → EventBridge (names for sets; `n#k` and `nL`
/// renumbered from Sunday = 1).
fn eventbridge_weekdays(field: &str) -> Result<String, String> {
    if let Some((day, nth)) = field.split_once('#') {
        return Ok(format!("{}#{nth}", weekday(day)? + 1));
    }
    if let Some(day) = field.strip_suffix(['L', 'l']) {
        return Ok(format!("{}L", weekday(day)? + 1));
    }
    let mut days = BTreeSet::new();
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => {
                (base, step.parse::<usize>().map_err(|_| format!("{item:?}: the step must be a number"))?)
            }
            None => (item, 1),
        };
        let (from, to) = match base {
            "*" => (0, 6),
            b => match b.split_once('-') {
                Some((a, b)) => {
                    // `5-7` means Friday to Sunday: 7 closes the week.
                    let to = if b == "7" { 7 } else { weekday(b)? };
                    (weekday(a)?, to)
                }
                None if item.contains('/') => (weekday(b)?, 6),
                None => (weekday(b)?, weekday(b)?),
            },
        };
        if from > to {
            return Err(format!("{item:?}: a range must go upwards"));
        }
        days.extend((from..=to).step_by(step.max(1)).map(|d| d % 7));
    }
    Ok(days.iter().map(|d| DAY_NAMES[*d as usize]).collect::<Vec<_>>().join(","))
}

/// EventBridge day-of-week field → Unix, or `None` if it is not a form
/// Coffer writes.
fn unix_weekdays(field: &str) -> Option<String> {
    let renumber = |s: &str| -> Option<String> {
        if DAY_NAMES.iter().any(|d| d.eq_ignore_ascii_case(s)) {
            return Some(s.to_uppercase());
        }
        s.parse::<u32>().ok().filter(|n| (1..=7).contains(n)).map(|n| (n - 1).to_string())
    };
    if let Some((day, nth)) = field.split_once('#') {
        return Some(format!("{}#{nth}", renumber(day)?));
    }
    if let Some(day) = field.strip_suffix('L') {
        return Some(format!("{}L", renumber(day)?));
    }
    field
        .split(',')
        .map(|item| match item.split_once('-') {
            Some((a, b)) => Some(format!("{}-{}", renumber(a)?, renumber(b)?)),
            None => renumber(item),
        })
        .collect::<Option<Vec<_>>>()
        .map(|items| items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translations_to_eventbridge() {
        let cases = [
            ("0 2 * * *", "cron(0 2 * * ? *)"),
            ("0 3 1 * *", "cron(0 3 1 * ? *)"),
            ("30 1 * * 1-5", "cron(30 1 ? * MON,TUE,WED,THU,FRI *)"),
            ("0 4 * * 0", "cron(0 4 ? * SUN *)"),
            ("0 4 * * 7", "cron(0 4 ? * SUN *)"),
            ("0 4 * * 5-7", "cron(0 4 ? * SUN,FRI,SAT *)"),
            ("0 4 * * sat,sun", "cron(0 4 ? * SUN,SAT *)"),
            ("*/15 */6 * * *", "cron(0,15,30,45 0,6,12,18 * * ? *)"),
            ("0 0 L * *", "cron(0 0 L * ? *)"),
            ("0 5 * * 5#2", "cron(0 5 ? * 6#2 *)"),
            ("0 5 * * 1L", "cron(0 5 ? * 2L *)"),
            ("0 0 1 1,7 *", "cron(0 0 1 1,7 ? *)"),
        ];
        for (unix, eventbridge) in cases {
            check(unix).unwrap_or_else(|e| panic!("{unix}: {e}"));
            assert_eq!(to_eventbridge(unix).unwrap(), eventbridge, "{unix}");
        }
    }

    #[test]
    fn translations_back_keep_the_meaning() {
        assert_eq!(from_eventbridge("cron(0 2 * * ? *)"), "0 2 * * *");
        assert_eq!(from_eventbridge("cron(30 1 ? * MON,FRI *)"), "30 1 * * MON,FRI");
        assert_eq!(from_eventbridge("cron(0 5 ? * 6#2 *)"), "0 5 * * 5#2");
        assert_eq!(from_eventbridge("cron(0 5 ? * 1-7 *)"), "0 5 * * 0-6");
        assert_eq!(from_eventbridge("rate(5 minutes)"), "rate(5 minutes)");
        assert_eq!(from_eventbridge("cron(0 2 * * ? 2027)"), "cron(0 2 * * ? 2027)");
        for unix in ["0 2 * * *", "15 3 1 * *", "0 4 * * MON,WED"] {
            let back = from_eventbridge(&to_eventbridge(unix).unwrap());
            assert_eq!(to_eventbridge(&back).unwrap(), to_eventbridge(unix).unwrap());
        }
    }

    #[test]
    fn bad_expressions_say_what_is_allowed() {
        for bad in ["", "0 2 * *", "0 2 * * * *", "@daily", "61 2 * * *", "0 25 * * *", "0 2 32 * *", "x 2 * * *"] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
        let both = check("0 2 1 * 1").unwrap_err();
        assert!(both.contains("day-of-month and day-of-week"), "{both}");
        assert!(check_timezone("Europe/Berlin").is_ok());
        assert!(check_timezone("Mars/Olympus").unwrap_err().contains("IANA"));
    }
}
