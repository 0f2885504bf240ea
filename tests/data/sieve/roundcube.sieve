require ["fileinto","vacation","date","relational","imap4flags","copy","regex"];
# rule:[Mailing lists]
if header :contains "list-id" "dev.lists.example.org"
{
	fileinto "INBOX.Lists";
	stop;
}
# rule:[Boss]
if anyof (address :is "from" "boss@example.org", header :contains "subject" ["urgent","asap"])
{
	addflag "\\Seen";
	fileinto :copy "Important";
}
# rule:[Big mail]
if size :over 2M
{
	fileinto "Big";
}
# rule:[Invoices]
if header :regex "subject" "^Invoice [0-9]+"
{
	fileinto "Invoices";
}
# rule:[Spam]
if header :contains "subject" "[SPAM]"
{
	fileinto "Junk";
	stop;
}
# rule:[Vacation]
if allof (currentdate :value "ge" "date" "2020-01-01", currentdate :value "le" "date" "2099-12-31")
{
	vacation :days 7 :subject "Out of office" "I am away until the end of the century.
Urgent matters: helpdesk@example.org";
}
