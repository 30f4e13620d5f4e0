source "software" "main" {}
provider "aws" "main" {}
key "a" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  expiry   { after = "1y" }
  rotation { every = "90 days" }
}
key "b" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  expiry   {
    after = "30d"
    never = true
  }
  rotation { every = 90 }
}
key "c" {
  algorithm = "AES_256"
  source    = source.software.main
  targets   = [provider.aws.main]
  expiry {}
}
