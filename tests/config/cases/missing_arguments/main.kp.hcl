key "k" {
  labels = {}
}
