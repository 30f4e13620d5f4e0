source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "forever" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
}
key "long" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  expiry {
    after = "365d"
  }
}
policy {
  builtin = "listed"
  rule "expiry" {
    max_days = 180
  }
}
