// Every test runs under a time limit: a hang fails its test (naming it) instead of stalling the run.
// The limit is a hang guard, never a speed test: each suite's is far above its time on a loaded
// machine. This scan of Tests/**/*.swift keeps it so: every `@Suite` carries `.timeLimit`, and
// every `@Test` sits in a type declared with such a `@Suite` (or in an extension of one).
// A test's clock starts when the runner starts it, and the runner starts most tests at once and
// runs them side by side: on a loaded 2-core machine a test that takes 10 ms alone has been seen
// to end 150 s after it started (a 2-minute limit failed it). So a limit must exceed a whole
// loaded run, not the test's own time: at least `minimumTimeLimitMinutes`.

import Foundation
import Testing

/// The shortest time limit a suite may have (see the header).
let minimumTimeLimitMinutes = 10

/// What is wrong with the suites of some test sources (path → text), one line per problem.
func suiteTimeLimitProblems(_ files: [(path: String, text: String)]) -> [String] {
    struct Decl { let path: String; let line: Int; let isExtension: Bool; let name: String; let suite: String?; var tests = 0 }
    var decls: [Decl] = []
    var problems: [String] = []
    let stringLiteral = try! Regex(#""(?:[^"\\]|\\.)*""#)
    let minutes = try! Regex(#"\.timeLimit\(\.minutes\((\d+)\)\)"#)
    let declaration = try! Regex(#"^(?:@.*\s)?(?:(?:public|internal|private|fileprivate|final)\s+)*(struct|class|enum|actor|extension)\s+(\w+)"#)
    for file in files {
        let lines = file.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var current: Int?         // index in `decls` of the top-level type the scan is in
        var attributes: [String] = []  // column-0 attribute lines just above a declaration
        for (i, line) in lines.enumerated() {
            let trimmed = line.drop { $0 == " " }
            if trimmed.hasPrefix("//") { continue }
            if !line.hasPrefix(" "), let m = line.firstMatch(of: declaration) {
                let head = (attributes + [line]).joined(separator: "\n")
                // String literals (a suite's name) are left out: only a trait counts.
                let suite = head.range(of: "@Suite").map { String(head[$0.lowerBound...]).replacing(stringLiteral, with: "\"\"") }
                decls.append(Decl(path: file.path, line: i + 1, isExtension: m.output[1].substring == "extension",
                                  name: String(m.output[2].substring ?? ""), suite: suite))
                current = decls.count - 1
                attributes = []
                continue
            }
            // An attribute's arguments may go on over several lines (until its parentheses close).
            let joined = attributes.joined()
            if !attributes.isEmpty, joined.filter({ $0 == "(" }).count > joined.filter({ $0 == ")" }).count {
                attributes.append(line)
                continue
            }
            if line.hasPrefix("@") { attributes.append(line); if !line.hasPrefix("@Test") { continue } }
            else if !trimmed.isEmpty { attributes = [] }
            if trimmed.hasPrefix("@Test") {
                if !line.hasPrefix(" ") {
                    problems.append("\(file.path):\(i + 1): a @Test outside any @Suite type (no time limit)")
                    attributes = []
                } else if let c = current {
                    decls[c].tests += 1
                }
            }
        }
    }
    let limited = Set(decls.filter { !$0.isExtension && ($0.suite?.contains(".timeLimit(") ?? false) }.map(\.name))
    for d in decls {
        if let suite = d.suite, !suite.contains(".timeLimit(") {
            problems.append("\(d.path):\(d.line): @Suite of \(d.name) has no .timeLimit")
        } else if let suite = d.suite, let m = suite.firstMatch(of: minutes), let n = Int(m.output[1].substring ?? ""),
                  n < minimumTimeLimitMinutes {
            problems.append("\(d.path):\(d.line): @Suite of \(d.name) has a limit of \(n) min, under \(minimumTimeLimitMinutes) (tests run side by side)")
        } else if d.tests > 0, d.isExtension, !limited.contains(d.name) {
            problems.append("\(d.path):\(d.line): tests in an extension of \(d.name), which is no @Suite with a .timeLimit")
        } else if d.tests > 0, !d.isExtension, d.suite == nil {
            problems.append("\(d.path):\(d.line): \(d.name) has tests but no @Suite(.timeLimit(...))")
        }
    }
    return problems
}

@Suite(.timeLimit(.minutes(10))) struct SuiteTimeLimitTests {
    /// Tests/, found from this file's own path.
    static let testsFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    @Test func everySuiteInTheTreeHasATimeLimit() throws {
        let root = Self.testsFolder
        let walker = try #require(FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil))
        var files: [(path: String, text: String)] = []
        for case let url as URL in walker where url.pathExtension == "swift" {
            files.append((String(url.path.dropFirst(root.path.count + 1)), try String(contentsOf: url, encoding: .utf8)))
        }
        #expect(files.count > 40, "the scan found the test sources under \(root.path)")
        #expect(files.reduce(0) { $0 + $1.text.components(separatedBy: "@Test").count - 1 } > 200)
        let problems = suiteTimeLimitProblems(files)
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    /// The scan itself finds each kind of omission (and accepts what the tree does).
    @Test func theScanNamesEachOmission() {
        let good = """
            @Suite("A", .serialized, .timeLimit(.minutes(10)))
            struct A {
                @Test func one() {}
            }
            extension A {
                @Test func two() {}
            }
            @Suite(.timeLimit(.minutes(15))) struct B {
                @Test("named", arguments: [1, 2])
                func three(n: Int) {}
            }
            @Suite(
                "C",
                .timeLimit(.minutes(10))
            )
            final class C {
                @Test func four() {}
            }
            struct Helper { func notATest() {} }
            """
        #expect(suiteTimeLimitProblems([("good.swift", good)]) == [])
        let noLimit = "@Suite(\"A\", .serialized)\nstruct A {\n    @Test func one() {}\n}\n"
        #expect(suiteTimeLimitProblems([("x.swift", noLimit)]) == ["x.swift:2: @Suite of A has no .timeLimit"])
        let noSuite = "import Testing\n\nstruct A {\n    @Test func one() {}\n}\n"
        #expect(suiteTimeLimitProblems([("x.swift", noSuite)]) == ["x.swift:3: A has tests but no @Suite(.timeLimit(...))"])
        let free = "import Testing\n@Test func loose() {}\n"
        #expect(suiteTimeLimitProblems([("x.swift", free)]) == ["x.swift:2: a @Test outside any @Suite type (no time limit)"])
        let nameOnly = "@Suite(\"a .timeLimit(.minutes(1)) in the name\") struct A {\n    @Test func one() {}\n}\n"
        #expect(suiteTimeLimitProblems([("x.swift", nameOnly)]) == ["x.swift:1: @Suite of A has no .timeLimit"])
        let short = "@Suite(\"A\", .timeLimit(.minutes(2)))\nstruct A {\n    @Test func one() {}\n}\n"
        #expect(suiteTimeLimitProblems([("x.swift", short)])
                == ["x.swift:2: @Suite of A has a limit of 2 min, under 10 (tests run side by side)"])
        let strayExtension = "extension A {\n    @Test func one() {}\n}\n"
        #expect(suiteTimeLimitProblems([("x.swift", strayExtension)])
                == ["x.swift:1: tests in an extension of A, which is no @Suite with a .timeLimit"])
    }
}
