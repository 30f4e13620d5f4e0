source "software" "local" {}

provider "azure" "vault" {
  vault_url = "https://payments.vault.azure.net"
}

provider "azure" "hsm" {
  vault_url = "https://payments.managedhsm.azure.net"
}

# Symmetric keys import into a Managed HSM only; RSA and EC into both kinds.
key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.azure.hsm]
}

key "signing" {
  algorithm = "RSA_3072"
  usage     = "sign"
  source    = source.software.local
  targets   = [provider.azure.vault, provider.azure.hsm]
  labels    = { team = "core" }
}
