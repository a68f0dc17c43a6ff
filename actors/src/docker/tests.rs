use super::*;

#[tokio::test]
async fn response_head_keeps_the_bytes_after_it() {
    let raw: &[u8] = b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n\x01\x00\x00$ ";
    let mut reader = raw;
    let (status, rest) = read_response_head(&mut reader).await.unwrap();
    assert_eq!(status, 101);
    assert_eq!(&rest[..], b"\x01\x00\x00$ ");
}

#[tokio::test]
async fn response_head_reports_early_eof() {
    let mut reader: &[u8] = b"HTTP/1.1 404 Not";
    assert!(read_response_head(&mut reader).await.is_err());
}

#[test]
fn detach_keys_are_url_encoded() {
    assert_eq!(percent_encode("ctrl-^,ctrl-@"), "ctrl-%5E%2Cctrl-%40");
}
