require ["fileinto", "copy", "imap4flags", "body"];

# Mailing lists
if header :contains "List-Id" "<devel.lists.example.net>" {
  fileinto "Lists.devel";
  stop;
}
if header :contains "List-Id" "<users.lists.example.net>" {
  fileinto "Lists.users";
  stop;
}
if header :matches "subject" "*[JIRA]*" {
  fileinto "Work.Jira";
  stop;
}
if allof (address :domain :is "from" "github.com", header :contains "subject" "Pull request") {
  fileinto "Work.GitHub";
}
if body :text :contains "unsubscribe" {
  addflag "$label4";
}
if header :is "X-Priority" "1" {
  fileinto :copy "Urgent";
}
