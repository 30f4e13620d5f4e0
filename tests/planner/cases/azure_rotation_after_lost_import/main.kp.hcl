source "software" "local" {}

provider "azure" "vault" {
  vault_url = "https://payments.vault.azure.net"
}

# An apply rotating this key was killed after Azure imported material v2 (version v3) and before
# state recorded it: v3 is checked before importing again. v0 is history from before adoption.
key "signing" {
  algorithm   = "RSA_3072"
  usage       = "sign"
  source      = source.software.local
  targets     = [provider.azure.vault]
  labels      = { team = "core" }
  description = "signs payment batches"
}
