// How reports print counts: digits in groups of three ("80,000 zones"), and a zone limit of 0 as
// "unlimited" (the device reports 0 for no limit). One place, so every report agrees.

public enum CountText {
    /// `n` with a comma between groups of three digits: 80000 → "80,000".
    public static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return n < 0 ? "-" + out : out
    }

    /// A zone limit as a report shows it: 0 is "unlimited".
    public static func limit(_ n: Int) -> String { n == 0 ? "unlimited" : String(n) }
}
