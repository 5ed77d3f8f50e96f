//! [`Usdc`]: an amount of USDC in micro-units, never a float.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Micro-units in one USDC (USDC has 6 decimals).
pub const MICROS_PER_USDC: u64 = 1_000_000;

/// An amount of USDC in micro-USDC (10⁻⁶ USDC).
///
/// Arithmetic is checked or saturating; there is no operator that can silently wrap.
///
/// `Display` prints all six decimals and the unit: `1.234567 USDC`. [`FromStr`] reads a
/// decimal with at most six fractional digits, optionally followed by ` USDC`
/// (`"1.5"`, `"0.000001 USDC"`), without going through floating point.
///
/// **Serde:** in human-readable formats (JSON, TOML) an amount is a decimal *string*
/// such as `"1.500000"` (JSON numbers lose precision above 2⁵³ in common parsers);
/// in postcard it is the number of micro-units as a varint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usdc(u64);

impl Usdc {
    /// Nothing.
    pub const ZERO: Self = Self(0);
    /// The largest representable amount.
    pub const MAX: Self = Self(u64::MAX);

    /// An amount of `micros` micro-USDC.
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// Whole USDC, or `None` if the amount does not fit.
    pub const fn from_whole(usdc: u64) -> Option<Self> {
        match usdc.checked_mul(MICROS_PER_USDC) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// The amount in micro-USDC.
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// Whether the amount is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, or `None` on overflow.
    #[must_use]
    pub const fn checked_add(self, other: Self) -> Option<Self> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self - other`, or `None` if `other` is larger.
    #[must_use]
    pub const fn checked_sub(self, other: Self) -> Option<Self> {
        match self.0.checked_sub(other.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self × factor`, or `None` on overflow.
    #[must_use]
    pub const fn checked_mul(self, factor: u64) -> Option<Self> {
        match self.0.checked_mul(factor) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self + other`, saturating at [`Usdc::MAX`].
    #[must_use]
    pub const fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    /// `self - other`, saturating at zero.
    #[must_use]
    pub const fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }
}

impl Usdc {
    /// The amount as a bare decimal with six places (`1.250000`), as the API and JSON
    /// write it; `Display` adds the unit.
    pub fn decimal(self) -> impl fmt::Display {
        Decimal(self.0)
    }
}

/// See [`Usdc::decimal`].
struct Decimal(u64);

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}",
            self.0 / MICROS_PER_USDC,
            self.0 % MICROS_PER_USDC
        )
    }
}

impl fmt::Display for Usdc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} USDC", self.decimal())
    }
}

/// Why a decimal string is not an amount of USDC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseUsdcError {
    /// Nothing to parse.
    #[error("empty amount")]
    Empty,
    /// A character other than digits, one `.` and an optional ` USDC` suffix.
    #[error("`{0}` is not a decimal amount such as `1.25` or `0.000001 USDC`")]
    Syntax(String),
    /// More than six digits after the decimal point: USDC has six decimals.
    #[error("`{0}` has more than 6 decimal places (1 micro-USDC = 0.000001)")]
    TooPrecise(String),
    /// The amount does not fit in 64 bits of micro-USDC.
    #[error("`{0}` is too large")]
    Overflow(String),
}

impl FromStr for Usdc {
    type Err = ParseUsdcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = s.strip_suffix(" USDC").unwrap_or(s);
        if number.is_empty() {
            return Err(ParseUsdcError::Empty);
        }
        let (whole, frac) = match number.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (number, None),
        };
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) {
            return Err(ParseUsdcError::Syntax(s.to_owned()));
        }
        let frac = frac.unwrap_or("");
        if (number.contains('.') && frac.is_empty()) || !all_digits(frac) {
            return Err(ParseUsdcError::Syntax(s.to_owned()));
        }
        if frac.len() > 6 {
            return Err(ParseUsdcError::TooPrecise(s.to_owned()));
        }
        let overflow = || ParseUsdcError::Overflow(s.to_owned());
        let whole: u64 = whole.parse().map_err(|_| overflow())?;
        // Pad the fraction to exactly six digits: "5" → 500000.
        let frac_micros: u64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().map_err(|_| overflow())?
        };
        whole
            .checked_mul(MICROS_PER_USDC)
            .and_then(|w| w.checked_add(frac_micros))
            .map(Self)
            .ok_or_else(overflow)
    }
}

impl Serialize for Usdc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&self.decimal())
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Usdc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(D::Error::custom)
        } else {
            u64::deserialize(deserializer).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_six_decimals_and_unit() {
        assert_eq!(Usdc::from_micros(1_234_567).to_string(), "1.234567 USDC");
        assert_eq!(Usdc::ZERO.to_string(), "0.000000 USDC");
        assert_eq!(Usdc::from_micros(1).to_string(), "0.000001 USDC");
        assert_eq!(Usdc::MAX.to_string(), "18446744073709.551615 USDC");
    }

    #[test]
    fn parses_decimals_without_floats() {
        let p = |s: &str| s.parse::<Usdc>().map(Usdc::micros);
        assert_eq!(p("1"), Ok(1_000_000));
        assert_eq!(p("1.5"), Ok(1_500_000));
        assert_eq!(p("0.000001"), Ok(1));
        assert_eq!(p("0.1 USDC"), Ok(100_000));
        assert_eq!(p("18446744073709.551615"), Ok(u64::MAX));
        assert!(matches!(
            p("18446744073709.551616"),
            Err(ParseUsdcError::Overflow(_))
        ));
        assert!(matches!(p("0.0000001"), Err(ParseUsdcError::TooPrecise(_))));
        for bad in [
            "", "-1", "+1", "1.", ".5", "1e3", "1,5", " 1", "1.5usdc", "0x10", "1..2",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn json_is_a_decimal_string_and_postcard_is_micros() {
        let amount = Usdc::from_micros(2_500_001);
        assert_eq!(serde_json::to_string(&amount).unwrap(), "\"2.500001\"");
        assert_eq!(
            serde_json::from_str::<Usdc>("\"2.500001\"").unwrap(),
            amount
        );
        assert!(
            serde_json::from_str::<Usdc>("2.5").is_err(),
            "JSON numbers are refused"
        );
        let bytes = postcard::to_stdvec(&amount).unwrap();
        assert_eq!(postcard::from_bytes::<Usdc>(&bytes).unwrap(), amount);
    }

    #[test]
    fn checked_arithmetic_refuses_to_wrap() {
        assert_eq!(Usdc::MAX.checked_add(Usdc::from_micros(1)), None);
        assert_eq!(Usdc::ZERO.checked_sub(Usdc::from_micros(1)), None);
        assert_eq!(Usdc::MAX.checked_mul(2), None);
        assert_eq!(Usdc::from_whole(u64::MAX), None);
        assert_eq!(Usdc::ZERO.saturating_sub(Usdc::from_micros(5)), Usdc::ZERO);
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(micros in any::<u64>()) {
            let amount = Usdc::from_micros(micros);
            prop_assert_eq!(amount.to_string().parse::<Usdc>(), Ok(amount));
            let json = serde_json::to_string(&amount).unwrap();
            prop_assert_eq!(serde_json::from_str::<Usdc>(&json).unwrap(), amount);
        }
    }
}
