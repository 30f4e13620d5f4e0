soruce "software" "main" {}
key "k" {
  algorithm = "AES_256"
  source    = "software.main"
  targets   = []
  expiration { after = "1d" }
}
