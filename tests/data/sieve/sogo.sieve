require ["fileinto","reject","vacation","envelope","imap4flags"];
if header :contains "subject" "Reunión de consejo" {
    fileinto "Consejo";
}
if anyof (header :contains "from" "boletin@noticias.example.com", header :contains "from" "newsletter@tienda.example.com") {
    setflag "\\Seen";
    fileinto "Boletines";
    stop;
}
if header :contains "to" "todos@example.org" {
    fileinto "Avisos generales";
}
if size :over 20M {
    fileinto "Grandes";
}
vacation :days 2 :addresses ["pedro.luna@example.org","pluna@example.org"] :subject "Ausente" "Estaré fuera de la oficina hasta el lunes.";
