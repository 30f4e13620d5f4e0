source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "legacy" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
key "other" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
policy {
  builtin = "listed"
  rule "rotation" {
    severity = "error"
  }
  exception "rotation" {
    scope {
      addresses = ["key.leg*"]
    }
    reason  = "the legacy reader cannot re-wrap until the migration ends"
    expires = "2026-12-31"
  }
}
