source "software" "local" {}

provider "azure" "vault" {
  vault_url = "https://payments.vault.azure.net"
}

# Azure keeps tags and the enabled flag, but no aliases and no description: changing the
# description plans nothing at Azure, changing a tag plans one update.
key "signing" {
  algorithm   = "RSA_3072"
  usage       = "sign"
  source      = source.software.local
  targets     = [provider.azure.vault]
  labels      = { team = "payments" }
  description = "signs payment batches"
}
