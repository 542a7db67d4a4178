public enum ZBDFSVersion { public static let string = "0.1.0" }
