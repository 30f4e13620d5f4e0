source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
key "orders" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels = { app = "orders", env = "prod" }
}
key "scratch" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels = { app = "orders", env = "pci" }
}
policy {
  builtin = "listed"
  rule "hardware-source" {
    scope {
      labels = { env = ["pci*"] }
    }
  }
}
