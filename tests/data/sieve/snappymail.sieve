require ["include","environment","variables","relational","comparator-i;ascii-numeric","spamtest"];
require ["fileinto","reject","vacation","regex","copy","date","imap4flags"];

/*
BEGIN:FILTER:1234567890
BEGIN:HEADER
eyJJRCI6IjEyMzQifQ==
END:HEADER
*/
if header :contains ["From"] ["recibos@banco.example.com"]
{
	fileinto "Banco";
	stop;
}
/* END:FILTER */

/*
BEGIN:FILTER:1234567891
*/
if allof (header :contains ["Subject"] ["Informe"], header :contains ["To"] ["direccion@example.org"])
{
	redirect :copy "archivo@example.org";
}
/* END:FILTER */

if spamtest :value "ge" :comparator "i;ascii-numeric" "5"
{
	fileinto "Junk";
	stop;
}
