source "software" "local" {}

provider "azure" "vault" {
  vault_url = "https://payments.vault.azure.net"
}

key "signing" {
  algorithm = "RSA_3072"
  usage     = "sign"
  source    = source.software.local
  targets   = [provider.azure.vault]
  labels    = { team = "core" }
}
