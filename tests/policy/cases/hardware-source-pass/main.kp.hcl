source "software" "main" { keystore = ".keyplan/keystore.json" }
provider "aws" "main" {
  region   = "us-east-1"
  endpoint = "embedded"
}
source "pkcs11" "hsm" {
  module      = "/usr/lib/softhsm/libsofthsm2.so"
  token_label = "keyplan"
  pin_env     = "KEYPLAN_HSM_PIN"
}
key "orders" {
  algorithm = "AES_256"
  source    = source.pkcs11.hsm
  targets   = [provider.aws.main]
  labels = { app = "orders", env = "prod" }
}
key "scratch" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  labels    = { app = "billing", env = "dev" }
}
policy {
  builtin = "listed"
  rule "hardware-source" {
  }
}
