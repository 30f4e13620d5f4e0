key "a" {
  algorithm = "AES_256"
  labels    = { a = "x" b }
}
