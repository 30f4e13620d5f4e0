source "software" "local" {}

provider "gcp" "main" {
  project  = "acme"
  location = "europe-west1"
  key_ring = "payments"
}

key "app" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.gcp.main]
  labels    = { team = "core" }
}

key "signing" {
  algorithm = "EC_P256"
  usage     = "sign"
  source    = source.software.local
  targets   = [provider.gcp.main]
}
